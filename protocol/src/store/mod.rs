//! The Redis schema (being written).

/// The store (being written).
#[derive(Debug, Clone)]
pub struct Store {}
/// A queue (being written).
#[derive(Debug, Clone)]
pub struct Queue {}
/// Store errors (being written).
#[derive(Debug, thiserror::Error)]
#[error("store error")]
pub struct StoreError {}
