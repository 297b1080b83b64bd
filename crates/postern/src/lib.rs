//! Postern library: configuration and server wiring (being written).
