//! `status`: a table or JSON, and an exit code after LSB `status`.

use std::time::Duration;

use supervisor_core::protocol::Command;
use supervisor_core::{ExitStatus, LsbStatus, ServiceStatus, StatusSnapshot};

use super::reach::Reach;
use crate::exit::{self, CliError};

/// The LSB `status` code of one service.
#[must_use]
pub fn lsb_code(s: &ServiceStatus) -> u8 {
    LsbStatus::of(s).code()
}

/// The code for several services: the first that applies of 1, 3, 0
/// (4, unknown service, is decided before).
pub fn combined_code(services: &[ServiceStatus]) -> u8 {
    LsbStatus::combine(services.iter().map(LsbStatus::of)).map_or(exit::OK, LsbStatus::code)
}

/// `status [NAME...] [--json]`.
///
/// # Errors
///
/// Not running (3), unknown service (4), or a failed call (1).
pub fn status(reach: &Reach, names: &[String]) -> Result<u8, CliError> {
    let command = Command::Status { names: names.to_vec() };
    let resp = reach.call(command, Duration::from_secs(10), exit::STATUS_STOPPED, exit::STATUS_UNKNOWN)?;
    let snapshot = resp.status.ok_or_else(|| CliError::Failed("the supervisor sent no status".into()))?;
    if crate::out::json() {
        crate::out::document(&snapshot);
    } else {
        crate::out::say(&table(&snapshot));
    }
    Ok(combined_code(&snapshot.services))
}

/// The human-readable table: a row per service, and in its last column
/// why a service is not running (or, for one that is, what it last said
/// over `sd_notify`, or what its last probe found).
pub fn table(snapshot: &StatusSnapshot) -> String {
    let header = ["NAME", "STATE", "READY", "HEALTH", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "INFO"];
    let mut rows = vec![header.map(String::from).to_vec()];
    for s in &snapshot.services {
        let last = match s.last_exit {
            None => "-".to_string(),
            Some(ExitStatus::Code(c)) => format!("code {c}"),
            Some(ExitStatus::Signal(sig)) => format!("SIG{}", supervisor_core::signal_name(sig)),
        };
        let task = s.extra.kind.as_deref() == Some("task");
        let info = s
            .reason
            .clone()
            .or_else(|| s.status_text.clone())
            .or_else(|| s.last_probe.as_ref().map(|p| format!("probe: {}", p.output)))
            .or_else(|| s.error.clone())
            .unwrap_or_default();
        rows.push(vec![
            s.name.clone(),
            s.state.to_string(),
            if task {
                "-"
            } else if s.ready {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            s.health.as_ref().map_or("-".into(), |h| h.state.clone()),
            s.pid.map_or("-".into(), |p| p.to_string()),
            s.uptime_s.map_or("-".into(), |u| human_duration(Duration::from_secs_f64(u))),
            s.restarts.to_string(),
            last,
            info,
        ]);
    }
    columns(&rows)
}

/// Rows in columns two spaces apart, the last one not padded.
pub fn columns<R: AsRef<[String]>>(rows: &[R]) -> String {
    let n = rows.first().map_or(0, |r| r.as_ref().len());
    let widths: Vec<usize> =
        (0..n).map(|i| rows.iter().map(|r| r.as_ref().get(i).map_or(0, String::len)).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.as_ref().iter().enumerate() {
            if i + 1 == n {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `3d4h`, `1h2m`, `4m5s`, `12s`.
#[must_use]
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{mins}m")
    } else if mins > 0 {
        format!("{mins}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use supervisor_core::{Expected, ServiceState};

    fn svc(state: ServiceState, wanted: Expected) -> ServiceStatus {
        // As a supervisor sends it (the struct grows: built from JSON).
        serde_json::from_value(serde_json::json!({
            "name": "x", "state": state, "pid": null, "uptime_s": null, "since_s": 0.0, "restarts": 0,
            "expected": "running", "wanted": wanted, "last_exit": null, "error": null, "descendants": 0,
            "dropped_bytes": 0,
        }))
        .expect("a status")
    }

    #[test]
    fn lsb_codes_combine_in_order_1_3_0() {
        use ServiceState::*;
        let up = Expected::Running;
        assert_eq!(combined_code(&[svc(Running, up), svc(Starting, up)]), 0);
        assert_eq!(combined_code(&[svc(Running, up), svc(Stopped, up)]), 3);
        assert_eq!(combined_code(&[svc(Exited, up), svc(Fatal, up), svc(Running, up)]), 1);
        assert_eq!(combined_code(&[svc(Backoff, up)]), 1);
        assert_eq!(combined_code(&[svc(Stopping, Expected::Stopped)]), 3);
        assert_eq!(combined_code(&[svc(Stopping, up)]), 0);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_secs(5)), "5s");
        assert_eq!(human_duration(Duration::from_secs(65)), "1m5s");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 120)), "3h2m");
        assert_eq!(human_duration(Duration::from_secs(2 * 86_400 + 3600)), "2d1h");
    }
}
