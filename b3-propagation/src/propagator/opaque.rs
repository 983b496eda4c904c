//! The opaque headers (`x-ot-span-context`, `grpc-trace-bin` when not decoded, the opt-in
//! vendor headers): checked, then forwarded verbatim.

use crate::OpaqueHeader;
use crate::error::{ErrorKind, ParseError};

/// The most bytes an opaque header value may have to be forwarded.
pub const MAX_OPAQUE_LEN: usize = 4096;

pub(super) fn check_opaque(h: OpaqueHeader, b: &[u8]) -> Result<(), ParseError> {
    let format = h.format();
    if b.is_empty() {
        return Err(ParseError::new(format, None, ErrorKind::Empty));
    }
    if b.len() > MAX_OPAQUE_LEN {
        return Err(ParseError::new(
            format,
            None,
            ErrorKind::TooLong {
                len: b.len(),
                max: MAX_OPAQUE_LEN,
            },
        ));
    }
    if let Some(i) = b.iter().position(|&c| !(0x21..=0x7e).contains(&c)) {
        return Err(ParseError::new(
            format,
            None,
            ErrorKind::InvalidCharacter {
                byte: b[i],
                index: i,
            },
        ));
    }
    // A `-bin` value that is not base64 makes gRPC peers fail the whole call: never send one.
    if h == OpaqueHeader::GrpcTraceBin && !crate::codec::grpc_trace_bin::is_base64(b) {
        return Err(ParseError::new(format, None, ErrorKind::InvalidBase64));
    }
    Ok(())
}
