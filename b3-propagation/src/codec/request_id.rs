//! `x-request-id` on a carrier. The id type and its policy are in
//! [`request_id`](crate::request_id).
//!
//! # Example
//!
//! ```
//! use b3_propagation::codec::request_id;
//! use http::{HeaderMap, HeaderValue};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("x-request-id", HeaderValue::from_static("f9ed4675f1c53513c61a3b3b4e25b4c0"));
//! let id = request_id::extract(&headers).unwrap()?;
//! assert_eq!(id.as_str(), "f9ed4675f1c53513c61a3b3b4e25b4c0");
//!
//! headers.insert("x-request-id", HeaderValue::from_static("abc def"));
//! assert!(request_id::extract(&headers).unwrap().is_err()); // treated as absent
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use crate::carrier::{Extractor, Injector};
use crate::error::ParseError;
use crate::header;
use crate::request_id::RequestId;

/// Read the first `x-request-id`: `None` when absent, else the validated id or why it was
/// rejected. Shares the received bytes when the carrier holds `HeaderValue`s.
pub fn extract<E: Extractor + ?Sized>(carrier: &E) -> Option<Result<RequestId, ParseError>> {
    let raw = carrier.get(&header::X_REQUEST_ID)?;
    // Validate on the bytes first: a rejected id never costs a copy.
    Some(RequestId::parse_shared(raw, || {
        carrier.get_value(&header::X_REQUEST_ID)
    }))
}

/// Write `x-request-id`.
pub fn inject<I: Injector + ?Sized>(id: &RequestId, carrier: &mut I) {
    carrier.set(&header::X_REQUEST_ID, id.header_value().clone());
}
