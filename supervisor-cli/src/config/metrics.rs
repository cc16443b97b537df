//! `[supervisor] metrics`: where the supervisor serves its Prometheus
//! metrics (see `docs/metrics.md`).

use supervisor_core::metrics::MetricsAddr;
use toml::de::DeValue;

use super::check::{resolve, Raw, Scope};

const EXPECTED: &str =
    "an address such as \"127.0.0.1:9100\", a port such as \"9100\" (on 127.0.0.1), or a Unix socket path with a `/`";

/// The value of `metrics`: a TCP address (a bare port or `:PORT` is on
/// the loopback address), or a Unix socket path (relative to the
/// configuration file's directory, as every path of the file).
pub(super) fn read_metrics(s: &mut Scope<'_, '_>, v: &Raw<'_>) -> Option<MetricsAddr> {
    let DeValue::String(text) = v.get_ref() else {
        s.mismatch("metrics", v, EXPECTED);
        return None;
    };
    match text.parse::<MetricsAddr>() {
        Ok(MetricsAddr::Tcp(a)) if a.port() == 0 => {
            s.error(v.span(), Some("metrics"), format!("expected a port from 1 to 65535, found {text:?}"));
            None
        }
        Ok(MetricsAddr::Unix(path)) => {
            let path = resolve(s.base, &path);
            s.socket_path("metrics", v, path).map(MetricsAddr::Unix)
        }
        Ok(addr) => Some(addr),
        Err(_) => {
            s.mismatch("metrics", v, EXPECTED);
            None
        }
    }
}
