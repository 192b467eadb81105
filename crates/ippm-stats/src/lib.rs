//! Metrics over packet records: delay, delay variation, loss, duplicates, reordering.
//!
//! Pure functions over records, no I/O.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
