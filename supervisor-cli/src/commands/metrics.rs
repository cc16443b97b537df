//! `metrics`: a running supervisor's metrics in Prometheus' text
//! exposition format, through its control socket: the same text that
//! `[supervisor] metrics` serves over HTTP (docs/metrics.md).

use std::time::Duration;

use supervisor_core::protocol::Command;

use super::reach::Reach;
use crate::exit::{self, CliError};

/// `metrics [--json]`: the text on standard output (with `--json`, in a
/// document's `metrics`).
///
/// # Errors
///
/// Not running (7), or a failed call (1).
pub fn metrics(reach: &Reach) -> Result<u8, CliError> {
    let resp = reach.call(Command::Metrics, Duration::from_secs(10), exit::NOT_RUNNING, exit::USAGE)?;
    let text =
        resp.metrics.ok_or_else(|| CliError::Failed("the supervisor sent no metrics (an older supervisor?)".into()))?;
    if crate::out::json() {
        crate::out::document(&serde_json::json!({ "ok": true, "command": "metrics", "metrics": text }));
    } else {
        crate::out::data(&text);
    }
    Ok(exit::OK)
}
