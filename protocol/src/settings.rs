//! Settings (being written).

/// Settings (being written).
#[derive(Debug, Clone, Default)]
pub struct Settings {}
