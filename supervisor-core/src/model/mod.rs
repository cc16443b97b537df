//! The description types: what a service is, what state it is in, and the
//! requests and answers about it. Plain data, with no I/O and no clock;
//! everything else in the crate is built on these.

mod exit;
mod external;
mod group;
mod limits;
mod lsb;
pub(crate) mod metrics;
pub(crate) mod protocol;
mod readiness;
mod request;
mod restart;
mod service;
mod status;
mod task;
mod transcript;
mod validate;

pub use exit::ExitWhen;
pub use external::ExternalSpec;
pub use external::{Health, Operation, PassReport, RestartCommand, Step};
pub use group::{Group, Strategy};
pub use limits::{parse_size, Limits, SizeError, UNLIMITED};
pub use lsb::LsbStatus;
pub use readiness::{HealthCheck, HttpTarget, Probe, ReadyCheck, ReadyPolicy};
pub use request::ServiceRequest;
pub use restart::{RestartMode, RestartPolicy};
pub use service::{
    parse_signal, signal_name, split_words, Command, Environment, Expected, Input, Kind, Output, Service, SplitError,
};
pub(crate) use status::human_secs;
pub use status::{
    ExitStatus, HealthStatus, KindStatus, ProbeStatus, ServiceState, ServiceStatus, StatusSnapshot, SupervisorStatus,
};
pub use task::{LastRun, TaskSpec};
pub(crate) use transcript::rfc3339_micros;
pub use transcript::{Timestamps, TranscriptConfig};
pub use validate::{valid_service_name, InvalidService, MAX_DURATION};
