//! Integration tests: the `supervisor` binary on real processes, signals
//! and sockets. Every wait has a deadline; none sleeps and hopes.

mod util;

mod cgroups;
mod cli_events;
mod cli_exit_codes;
mod cli_json;
mod cli_reach;
mod cli_readiness;
mod cli_reference;
mod config_errors;
mod container_examples;
mod control_socket;
mod daemon;
mod embedding;
mod engine;
mod exec;
mod external;
mod faults;
mod host_systemd;
mod init;
mod lifecycle;
mod metrics;
mod properties;
mod readiness;
mod reliability;
mod reload;
mod runtime_dirs;
mod security;
mod servicedirs;
mod simplevisor;
mod stopping;
mod svc_frontends;
mod tasks;
mod transcripts;
mod zdaemon;
