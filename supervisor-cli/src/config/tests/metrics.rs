use std::path::PathBuf;

use supervisor_core::metrics::MetricsAddr;

use super::{assert_at, ok, one_error};

fn metrics_of(value: &str) -> Option<MetricsAddr> {
    ok(&format!("[supervisor]\nmetrics = {value}\n")).metrics
}

#[test]
fn metrics_addresses() {
    let tcp = |s: &str| Some(MetricsAddr::Tcp(s.parse().unwrap()));
    assert_eq!(ok("").metrics, None, "served only where configured");
    assert_eq!(metrics_of("\"127.0.0.1:9100\""), tcp("127.0.0.1:9100"));
    assert_eq!(metrics_of("\"9100\""), tcp("127.0.0.1:9100"), "a bare port is on the loopback address");
    assert_eq!(metrics_of("\":9100\""), tcp("127.0.0.1:9100"));
    assert_eq!(metrics_of("\"localhost:9100\""), tcp("127.0.0.1:9100"));
    assert_eq!(metrics_of("\"[::1]:9100\""), tcp("[::1]:9100"));
    assert_eq!(metrics_of("\"0.0.0.0:9100\""), tcp("0.0.0.0:9100"));
    assert_eq!(metrics_of("\"/run/m.sock\""), Some(MetricsAddr::Unix("/run/m.sock".into())));
    // Relative to the configuration file's directory, as every path.
    assert_eq!(metrics_of("\"./run/m.sock\""), Some(MetricsAddr::Unix(PathBuf::from("/etc/sv/run/m.sock"))));
}

#[test]
fn bad_metrics_values_name_the_line_and_the_key() {
    for (value, says) in [
        ("\"nine\"", "expected an address such as \"127.0.0.1:9100\""),
        ("\"example.com:9100\"", "expected an address"),
        ("\"70000\"", "expected an address"),
        ("9100", "expected an address such as \"127.0.0.1:9100\", a port such as \"9100\""),
        ("\":0\"", "expected a port from 1 to 65535, found \":0\""),
        ("\"\"", "expected an address"),
    ] {
        let e = one_error(&format!("[supervisor]\nname = \"x\"\nmetrics = {value}\n"));
        assert_at(&e, 3, 11, None, Some("metrics"));
        assert!(e.message.contains(says), "{value}: {}", e.message);
        assert!(e.to_string().starts_with("/etc/sv/demo.toml:3:11: "), "{e}");
    }
    let long = format!("\"/{}\"", "d/".repeat(60));
    let e = one_error(&format!("[supervisor]\nmetrics = {long}\n"));
    assert!(e.message.contains("at most 107 bytes"), "{}", e.message);
}
