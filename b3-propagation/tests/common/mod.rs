//! Test support shared by the integration tests.

use b3_propagation::Extractor;
use http::HeaderName;

/// A carrier of raw bytes: values `http::HeaderValue` refuses (CR, LF, NUL, DEL) still reach
/// the codecs, as they would from a transport that does not validate. Names are lower case.
#[derive(Default)]
pub(crate) struct Raw(pub(crate) Vec<(String, Vec<u8>)>);

impl Raw {
    /// A carrier holding these (name, value) lines, in order.
    #[allow(dead_code)] // not every test file builds one this way
    pub(crate) fn new(pairs: &[(&str, Vec<u8>)]) -> Self {
        Raw(pairs
            .iter()
            .map(|(n, v)| ((*n).to_ascii_lowercase(), v.clone()))
            .collect())
    }
}

impl Extractor for Raw {
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n == name.as_str())
            .map(|(_, v)| v.as_slice())
    }

    fn get_all_values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let name = name.as_str().to_owned();
        self.0
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }
}
