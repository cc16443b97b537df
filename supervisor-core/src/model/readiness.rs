//! When a service is ready, whether it stays healthy, and what it waits
//! for: plain descriptions, checked by [`Service::validate`] and carried
//! out by the engine.
//!
//! [`Service::validate`]: crate::Service::validate

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Command;

/// A check made from outside the service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Probe {
    /// A command, run as the service runs (its user, directory and
    /// environment); exit code 0 passes.
    Exec(Command),
    /// A TCP connection to this address succeeds.
    Tcp(SocketAddr),
    /// A Unix stream connection to this socket succeeds.
    Unix(PathBuf),
    /// An HTTP/1.1 `GET` answers with a status from 200 to 399.
    Http(HttpTarget),
}

/// Where an HTTP probe connects and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpTarget {
    /// The address connected to.
    pub addr: SocketAddr,
    /// The `Host` header: the URL's authority as written.
    pub host: String,
    /// The path and query asked for (`/` when the URL has none).
    pub path: String,
}

impl HttpTarget {
    /// Reads `http://HOST:PORT/PATH`, where HOST is an IP address or
    /// `localhost` (a name would need a resolver that can block the
    /// engine; `https` is not spoken).
    ///
    /// # Errors
    ///
    /// A sentence saying what is wrong with `url`.
    pub fn parse(url: &str) -> Result<HttpTarget, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: only http:// URLs are probed"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = parse_addr(authority, 80).map_err(|e| format!("{url:?}: {e}"))?;
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("{url:?}: the path has a space or a control character"));
        }
        Ok(HttpTarget { addr, host: authority.to_string(), path: path.to_string() })
    }
}

/// Reads `HOST:PORT` (or `HOST` with `default_port`, when not zero),
/// where HOST is an IPv4 address, `[IPv6]` or `localhost`.
///
/// # Errors
///
/// A sentence saying what is wrong.
pub(crate) fn parse_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p.parse::<u16>().map_err(|_| format!("{p:?} is not a port number"))?;
            (h, port)
        }
        _ if default_port != 0 => (text, default_port),
        _ => return Err(format!("{text:?}: expected HOST:PORT")),
    };
    let ip = match host.trim_start_matches('[').trim_end_matches(']') {
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        h => h.parse().map_err(|_| format!("{host:?} is not an IP address or localhost"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// How the supervisor learns that a service is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadyCheck {
    /// `sd_notify`: `NOTIFY_SOCKET` is set for the service, which sends
    /// `READY=1`.
    Systemd,
    /// s6's style: the service writes a newline on this descriptor (3 or
    /// more), which the engine then closes on its side.
    Fd(i32),
    /// A probe passes, tried every [`ReadyPolicy::interval`].
    Probe(Probe),
    /// A line of the service's output matches this regular expression.
    Log(String),
}

/// When a service counts as ready (and so `running`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadyPolicy {
    /// How it is found out.
    pub check: ReadyCheck,
    /// Between two tries of a probe (default 250 ms).
    pub interval: Duration,
    /// Not ready this long after the start: the start failed, and the
    /// restart policy's backoff applies (default 60 s).
    pub timeout: Duration,
}

impl ReadyPolicy {
    /// A check with the default interval and timeout.
    #[must_use]
    pub fn new(check: ReadyCheck) -> ReadyPolicy {
        ReadyPolicy { check, interval: Duration::from_millis(250), timeout: Duration::from_secs(60) }
    }
}

/// A liveness check, made only while the service is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthCheck {
    /// What is checked.
    pub probe: Probe,
    /// Between two checks (default 10 s).
    pub interval: Duration,
    /// One check longer than this fails (default 2 s).
    pub timeout: Duration,
    /// This many failures in a row restart the service (default 3).
    pub failures: u32,
}

impl HealthCheck {
    /// A check with the default interval, timeout and failure count.
    #[must_use]
    pub fn new(probe: Probe) -> HealthCheck {
        HealthCheck { probe, interval: Duration::from_secs(10), timeout: Duration::from_secs(2), failures: 3 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_and_addresses_read() {
        let t = HttpTarget::parse("http://127.0.0.1:8080/healthz?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((t.host.as_str(), t.path.as_str()), ("127.0.0.1:8080", "/healthz?x=1"));
        let t = HttpTarget::parse("http://localhost").unwrap();
        assert_eq!((t.addr, t.path.as_str()), ("127.0.0.1:80".parse().unwrap(), "/"));
        assert_eq!(HttpTarget::parse("http://[::1]:81/").unwrap().addr, "[::1]:81".parse().unwrap());
        for bad in ["https://x/", "http://db.example:80/", "http://1.2.3.4:99999/", "http://1.2.3.4/a b"] {
            assert!(HttpTarget::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_addr("localhost:5432", 0).unwrap(), "127.0.0.1:5432".parse().unwrap());
        assert!(parse_addr("127.0.0.1", 0).is_err());
        assert!(parse_addr("", 0).is_err());
    }
}
