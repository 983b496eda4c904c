//! The sampling decision a context carries.
//!
//! B3 has four states and every one of them must survive a hop: a caller that said *deny*
//! (`b3: 0`, `x-b3-sampled: 0`) must not be turned into "no decision", and *debug*
//! (`b3: …-d`, `x-b3-flags: 1`) must not be turned into plain *accept*.
//!
//! # Example
//!
//! ```
//! use b3_propagation::Sampling;
//!
//! assert_eq!("debug".parse::<Sampling>(), Ok(Sampling::Debug));
//! assert_eq!(Sampling::Debug.is_sampled(), Some(true));
//! assert_eq!(Sampling::Deferred.is_sampled(), None);
//! assert_eq!(Sampling::Deny.as_str(), "deny");
//! ```

use std::fmt;
use std::str::FromStr;

/// A sampling decision. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Sampling {
    /// The caller decided to record this trace (`1`).
    Accept,
    /// The caller decided not to record this trace (`0`).
    Deny,
    /// Record this trace and bypass sampling limits (`d`, `x-b3-flags: 1`). Implies accept.
    Debug,
    /// No decision yet: the receiver decides (no sampling field).
    #[default]
    Deferred,
}

impl Sampling {
    /// `Some(true)` for accept and debug, `Some(false)` for deny, `None` for deferred.
    #[must_use]
    pub const fn is_sampled(self) -> Option<bool> {
        match self {
            Sampling::Accept | Sampling::Debug => Some(true),
            Sampling::Deny => Some(false),
            Sampling::Deferred => None,
        }
    }

    /// The name used by the `trace-headers` CLI and the conformance vectors:
    /// `accept`, `deny`, `debug` or `deferred`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Sampling::Accept => "accept",
            Sampling::Deny => "deny",
            Sampling::Debug => "debug",
            Sampling::Deferred => "deferred",
        }
    }
}

impl fmt::Display for Sampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string is not one of the four sampling names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownSampling;

impl fmt::Display for UnknownSampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected one of accept, deny, debug, deferred")
    }
}

impl std::error::Error for UnknownSampling {}

impl FromStr for Sampling {
    type Err = UnknownSampling;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "accept" => Ok(Sampling::Accept),
            "deny" => Ok(Sampling::Deny),
            "debug" => Ok(Sampling::Debug),
            "deferred" => Ok(Sampling::Deferred),
            _ => Err(UnknownSampling),
        }
    }
}
