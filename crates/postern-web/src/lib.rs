//! HTTPS API (being written).
