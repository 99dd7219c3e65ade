//! Frames between a supervisor and its worker processes (being written).
