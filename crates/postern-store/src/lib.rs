//! Persistent store (being written).
