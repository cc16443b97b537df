//! The front ends: ways to reach an engine from outside the program (the
//! control socket, the metrics endpoint) and to describe services without
//! code (daemontools service directories). They use the engine's typed
//! requests, as an embedder does.

pub(crate) mod client;
pub(crate) mod control;
pub(crate) mod metrics;
pub(crate) mod servicedir;
