//! Send schedules (RFC 4656 §3.5 schedule slots, §5 exponential generator).

/// One schedule slot of a Request-Session (RFC 4656 §3.5): the gap before the next packet is
/// either fixed or drawn from an exponential distribution with the given mean. The parameter
/// is kept as the raw 32.32 value from the wire (perfSONAR sends `-i 0.1` as `199999a0`, not
/// `1999999a`; the schedule must use the wire value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Slot Type 0: exponentially distributed gap with this mean (32.32 seconds).
    Exponential(u64),
    /// Slot Type 1: fixed gap (32.32 seconds).
    Fixed(u64),
}
