//! [`ContextFormat`] and [`FormatSet`]: the header formats that carry a span context.

use std::fmt;

use crate::Format;

/// A header format that can carry a span context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContextFormat {
    /// `b3`.
    B3Single,
    /// `x-b3-*`.
    B3Multi,
    /// `traceparent` (+ `tracestate`).
    TraceParent,
    /// `uber-trace-id`.
    Jaeger,
    /// `grpc-trace-bin` (decoded only when listed; otherwise forwarded verbatim).
    GrpcTraceBin,
}

impl ContextFormat {
    /// Every context format.
    pub const ALL: [ContextFormat; 5] = [
        ContextFormat::B3Single,
        ContextFormat::B3Multi,
        ContextFormat::TraceParent,
        ContextFormat::Jaeger,
        ContextFormat::GrpcTraceBin,
    ];

    /// The general [`Format`] of this context format.
    #[must_use]
    pub const fn format(self) -> Format {
        match self {
            ContextFormat::B3Single => Format::B3Single,
            ContextFormat::B3Multi => Format::B3Multi,
            ContextFormat::TraceParent => Format::TraceParent,
            ContextFormat::Jaeger => Format::Jaeger,
            ContextFormat::GrpcTraceBin => Format::GrpcTraceBin,
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

// `FormatSet::iter` reads `ALL[i]` as the format of bit `i`.
const _: () = {
    let mut i = 0;
    while i < ContextFormat::ALL.len() {
        assert!(ContextFormat::ALL[i] as usize == i);
        i += 1;
    }
};

impl fmt::Display for ContextFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.format().name())
    }
}

/// A small set of [`ContextFormat`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FormatSet(u8);

impl FormatSet {
    /// The empty set.
    pub const EMPTY: FormatSet = FormatSet(0);

    /// Whether `f` is in the set.
    #[must_use]
    pub const fn contains(self, f: ContextFormat) -> bool {
        self.0 & f.bit() != 0
    }

    /// The set with `f` added.
    #[must_use]
    pub const fn with(self, f: ContextFormat) -> Self {
        FormatSet(self.0 | f.bit())
    }

    /// Whether the set is empty.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set's bits (bit `f as u8` for each format `f`), below `1 << ContextFormat::ALL.len()`.
    pub(crate) const fn bits(self) -> u8 {
        self.0
    }

    /// The formats in the set, in [`ContextFormat::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = ContextFormat> {
        // Set bits lowest first: `ALL[i]` is bit `i` (a compile-time check next to
        // `ContextFormat::bit`), so this is `ALL`'s order, and a set of one format is one step.
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let i = usize::try_from(bits.trailing_zeros()).ok()?;
            bits &= bits.wrapping_sub(1);
            ContextFormat::ALL.get(i).copied()
        })
    }
}

impl FromIterator<ContextFormat> for FormatSet {
    fn from_iter<T: IntoIterator<Item = ContextFormat>>(iter: T) -> Self {
        iter.into_iter().fold(FormatSet::EMPTY, FormatSet::with)
    }
}

impl fmt::Debug for FormatSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}
