//! Daemon mode (being written).
