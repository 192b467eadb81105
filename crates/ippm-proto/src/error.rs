//! Errors of the wire layer.

/// Why a buffer could not be read as (or written into) a protocol message.
///
/// Every parser in [`crate::wire`] returns this type; none panics on any input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer is shorter than the message needs. The string names the message.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A field the RFC says "MUST be zero" was not, and the RFC says to reject it.
    #[error("non-zero MBZ field in {0}")]
    NonZeroMbz(&'static str),
    /// A field holds a value that is not allowed there.
    #[error("invalid value {value:#x} in {field}")]
    InvalidValue {
        /// The field, as `Message.Field`.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A count from the network is above the bound this implementation accepts.
    #[error("{field} is {value}, above the limit of {max}")]
    TooLarge {
        /// The field, as `Message.Field`.
        field: &'static str,
        /// The value found.
        value: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// Octets follow the end of a message that should fill the buffer exactly.
    #[error("trailing data after {0}")]
    TrailingData(&'static str),
    /// An output buffer is too small for `emit`.
    #[error("buffer too small to emit {0}")]
    BufferTooSmall(&'static str),
}
