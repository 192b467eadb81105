//! Test packets (being written)
