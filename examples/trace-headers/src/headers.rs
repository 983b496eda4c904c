//! The header lines the CLI reads (`-H`, `--stdin`), kept as given for the codecs.

use b3_propagation::Extractor;
use http::HeaderName;

/// Header lines in the order given, names lower-cased, values as raw bytes (so that control
/// characters reach the codecs and are reported, not lost).
#[derive(Clone, Debug, Default)]
pub struct Headers {
    lines: Vec<(String, Vec<u8>)>,
}

/// A header line without a `:`, or with nothing before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingColon(pub String);

impl std::fmt::Display for MissingColon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expected 'Name: value', got {:?}", self.0)
    }
}

impl std::error::Error for MissingColon {}

impl Headers {
    /// Add a `Name: value` line. The value is everything after the first `:` minus one
    /// leading space, otherwise verbatim (bytes, UTF-8 or not: the decoders judge them); a
    /// leading `> ` (from `curl -v`) is dropped.
    ///
    /// # Errors
    ///
    /// [`MissingColon`] when the line has no `:`, or no name before it.
    pub fn push_line(&mut self, line: impl AsRef<[u8]>) -> Result<(), MissingColon> {
        let line = line.as_ref();
        let line = line.strip_prefix(b"> ").unwrap_or(line);
        let missing = || MissingColon(String::from_utf8_lossy(line).into_owned());
        let colon = line.iter().position(|&b| b == b':').ok_or_else(missing)?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let name = String::from_utf8_lossy(name);
        let name = name.trim();
        if name.is_empty() {
            return Err(missing());
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        self.push(name, value);
        Ok(())
    }

    /// Add one field line.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.lines.push((name.to_ascii_lowercase(), value.to_vec()));
    }

    /// Read `Name: value` lines (blank lines skipped, `> ` prefixes dropped; the `\r` of a
    /// CRLF line end as in pasted HTTP is removed, and a leading UTF-8 byte order mark).
    /// Lines that are not `Name: value` (no `:`, such as `curl -v`'s request line, or no name
    /// before it) are returned for a warning.
    pub fn push_text(&mut self, text: impl AsRef<[u8]>) -> Vec<String> {
        let text = text.as_ref();
        let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
        let mut skipped = Vec::new();
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let blank = line.trim_ascii();
            if blank.is_empty() || blank == b">" {
                continue;
            }
            if let Err(MissingColon(l)) = self.push_line(line) {
                skipped.push(l);
            }
        }
        skipped
    }
}

impl Extractor for Headers {
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        self.lines
            .iter()
            .find(|(n, _)| n == name.as_str())
            .map(|(_, v)| v.as_slice())
    }

    fn get_all_values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let name = name.as_str().to_owned();
        self.lines
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.lines.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }
}
