//! Worker (being written).
