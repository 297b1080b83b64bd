//! PostgreSQL proxy (being written).
