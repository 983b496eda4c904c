//! Propagated fields: headers the application chooses to carry from the inbound request to
//! every outgoing call, verbatim.
//!
//! Istio routes on headers the application must carry along (bookinfo's `end-user: jason`
//! sends `reviews` traffic to v2); Brave calls them *remote fields*; a tenant id
//! (`x-tenant-id`) is another. Configure them on the [`Propagator`](crate::Propagator)
//! ([`PropagatorBuilder::field`](crate::PropagatorBuilder::field)): the propagator then
//! extracts each one with the trace, and writes it into every outgoing call, in forward and
//! instrument mode alike.
//!
//! Values are checked like baggage values: visible ASCII and spaces only (no CR, LF, NUL, TAB
//! or other control byte, no non-ASCII byte), at most [`MAX_FIELD_LEN`] bytes, not empty. A
//! value that breaks a rule is treated as absent and its [`ParseError`] (format
//! [`Format::Field`]) is kept in [`RequestContext::errors`](crate::RequestContext::errors).
//!
//! At an edge that does not trust its clients
//! ([`InboundFields::OnlyKeptAtEdge`](crate::InboundFields)), a field a client sent is dropped
//! unless it was declared [`kept_at_edge`](PropagatedField::kept_at_edge): a field an
//! authenticating proxy in front of the edge sets, say.
//!
//! # Example
//!
//! ```
//! use b3_propagation::{PropagatedField, Propagator, TrustPolicy};
//! use http::{HeaderMap, HeaderValue};
//!
//! let propagator = Propagator::builder()
//!     .field(PropagatedField::from_static("x-tenant-id"))
//!     .field(PropagatedField::from_static("end-user").kept_at_edge())
//!     .trust(TrustPolicy::untrusted())
//!     .build();
//!
//! let mut incoming = HeaderMap::new();
//! incoming.insert("end-user", HeaderValue::from_static("jason"));
//! incoming.insert("x-tenant-id", HeaderValue::from_static("acme"));
//! let cx = propagator.extract(&incoming);
//!
//! let mut outgoing = HeaderMap::new();
//! propagator.forward(&cx, &mut outgoing);
//! assert_eq!(outgoing["end-user"], "jason"); // kept at this untrusted edge
//! assert!(outgoing.get("x-tenant-id").is_none()); // a client may not choose its tenant
//! ```

use std::fmt;

use http::HeaderName;

use crate::Format;
use crate::error::{ErrorKind, Field, ParseError};

/// The most bytes a propagated field's value may have.
pub const MAX_FIELD_LEN: usize = 4096;

/// A header the application carries from the inbound request to every outgoing call. See
/// the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PropagatedField {
    name: HeaderName,
    kept_at_edge: bool,
}

/// Why a header name cannot be a propagated field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidField {
    name: String,
    reason: &'static str,
}

impl InvalidField {
    /// The name that was refused.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why, in a few words.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` cannot be a propagated field: {}",
            self.name, self.reason
        )
    }
}

impl std::error::Error for InvalidField {}

/// Header names a field may not take: the tracing headers the propagator owns, and the
/// headers that describe the connection or the message rather than the request.
fn reserved(name: &HeaderName) -> Option<&'static str> {
    const TRACING: [&str; 19] = [
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "traceparent",
        "tracestate",
        "traceresponse",
        "baggage",
        "x-request-id",
        "x-ot-span-context",
        "grpc-trace-bin",
        "uber-trace-id",
        "x-cloud-trace-context",
        "sw8",
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
    ];
    const MESSAGE: [&str; 11] = [
        "host",
        "connection",
        "keep-alive",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "te",
        "upgrade",
        "trailer",
        "proxy-authorization",
    ];
    let s = name.as_str();
    if TRACING.contains(&s) || crate::carrier::maybe_prefixed_baggage(s) {
        return Some("a tracing header the propagator already carries");
    }
    if MESSAGE.contains(&s) || s.starts_with("grpc-") || s.starts_with(':') {
        return Some("it describes the connection or the message, not the request");
    }
    None
}

impl PropagatedField {
    /// A field carried inside the mesh and dropped at an untrusted edge.
    ///
    /// # Errors
    ///
    /// [`InvalidField`] when `name` is not a valid header name, or is one the propagator
    /// already owns (`x-b3-*`, `traceparent`, `baggage`, `x-request-id`, ...) or one that
    /// describes the connection or message (`host`, `content-length`, `grpc-*`, ...).
    pub fn new(name: &str) -> Result<Self, InvalidField> {
        let invalid = |reason| InvalidField {
            name: name.to_owned(),
            reason,
        };
        let parsed = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| invalid("not a valid header name"))?;
        if let Some(reason) = reserved(&parsed) {
            return Err(invalid(reason));
        }
        Ok(PropagatedField {
            name: parsed,
            kept_at_edge: false,
        })
    }

    /// [`new`](Self::new) for a literal.
    ///
    /// # Panics
    ///
    /// When `name` is refused by [`new`](Self::new) (a programming error, as with
    /// `HeaderName::from_static`).
    #[must_use]
    pub fn from_static(name: &'static str) -> Self {
        match Self::new(name) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    /// Parse a comma-separated list of names (the format of an environment variable such as
    /// the mesh's `MESH_PROPAGATE_FIELDS`); blanks are skipped.
    ///
    /// # Errors
    ///
    /// The first name [`new`](Self::new) refuses.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, InvalidField> {
        list.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(Self::new)
            .collect()
    }

    /// Also keep this field when a client sends it to an edge that does not trust its
    /// clients ([`InboundFields::OnlyKeptAtEdge`](crate::InboundFields)).
    #[must_use]
    pub fn kept_at_edge(mut self) -> Self {
        self.kept_at_edge = true;
        self
    }

    /// The header name.
    #[must_use]
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// Whether it is kept at an untrusted edge.
    #[must_use]
    pub fn is_kept_at_edge(&self) -> bool {
        self.kept_at_edge
    }
}

/// Check a field value: not empty, at most [`MAX_FIELD_LEN`] bytes, visible ASCII and
/// spaces only.
///
/// # Errors
///
/// A [`ParseError`] of format [`Format::Field`] saying which rule the value broke.
pub fn check_value(value: &[u8]) -> Result<(), ParseError> {
    if value.is_empty() {
        return Err(ParseError::at(
            Format::Field,
            Field::Value,
            ErrorKind::Empty,
        ));
    }
    if value.len() > MAX_FIELD_LEN {
        return Err(ParseError::at(
            Format::Field,
            Field::Value,
            ErrorKind::TooLong {
                len: value.len(),
                max: MAX_FIELD_LEN,
            },
        ));
    }
    if let Some(i) = value.iter().position(|&b| !(0x20..=0x7e).contains(&b)) {
        return Err(ParseError::at(
            Format::Field,
            Field::Value,
            ErrorKind::InvalidCharacter {
                byte: value[i],
                index: i,
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(PropagatedField::new("End-User").unwrap().name(), "end-user");
        for (name, why) in [
            ("x-b3-traceid", "tracing header"),
            ("baggage-user", "tracing header"),
            ("traceparent", "tracing header"),
            ("x-request-id", "tracing header"),
            ("host", "connection"),
            ("content-length", "connection"),
            ("grpc-timeout", "connection"),
            ("bad name", "valid header name"),
            ("", "valid header name"),
        ] {
            let e = PropagatedField::new(name).unwrap_err();
            assert!(e.to_string().contains(why), "{name}: {e}");
            assert_eq!(e.name(), name);
        }
        let list = PropagatedField::parse_list(" end-user, ,x-tenant-id ").unwrap();
        assert_eq!(list.len(), 2);
        assert!(!list[0].is_kept_at_edge());
        assert!(list[0].clone().kept_at_edge().is_kept_at_edge());
        assert!(PropagatedField::parse_list("end-user,x-b3-flags").is_err());
    }

    #[test]
    fn values_are_checked() {
        assert!(check_value(b"jason").is_ok());
        assert!(check_value(b"a b").is_ok());
        for (v, kind) in [
            (&b""[..], ErrorKind::Empty),
            (
                b"a\r\nb",
                ErrorKind::InvalidCharacter {
                    byte: b'\r',
                    index: 1,
                },
            ),
            (b"a\0", ErrorKind::InvalidCharacter { byte: 0, index: 1 }),
            (
                b"\ta",
                ErrorKind::InvalidCharacter {
                    byte: b'\t',
                    index: 0,
                },
            ),
            (
                "é".as_bytes(),
                ErrorKind::InvalidCharacter {
                    byte: 0xc3,
                    index: 0,
                },
            ),
        ] {
            let e = check_value(v).unwrap_err();
            assert_eq!(e.kind(), kind, "{v:?}");
            assert_eq!(e.format(), Format::Field);
        }
        let long = vec![b'a'; MAX_FIELD_LEN + 1];
        assert_eq!(
            check_value(&long).unwrap_err().kind(),
            ErrorKind::TooLong {
                len: MAX_FIELD_LEN + 1,
                max: MAX_FIELD_LEN
            }
        );
        assert!(check_value(&long[1..]).is_ok());
    }
}
