use std::collections::BTreeMap;

use serde_json::json;

use super::*;

/// A service's status as a supervisor sends it (built from JSON: the
/// struct grows).
fn service(name: &str, fields: &serde_json::Value) -> ServiceStatus {
    let mut v = json!({
        "name": name, "state": "stopped", "pid": null, "uptime_s": null, "since_s": 1.0, "restarts": 0,
        "expected": "running", "wanted": "running", "last_exit": null, "error": null, "descendants": 0,
    });
    if let (Some(base), Some(more)) = (v.as_object_mut(), fields.as_object()) {
        base.extend(more.clone());
    }
    serde_json::from_value(v).expect("a service status")
}

fn snapshot(services: Vec<ServiceStatus>) -> StatusSnapshot {
    serde_json::from_value(json!({
        "supervisor": { "name": "t", "pid": 1, "uptime_s": 5.0, "events_emitted": 42, "control_requests": 7 },
        "services": [],
    }))
    .map(|mut s: StatusSnapshot| {
        s.services = services;
        s
    })
    .expect("a snapshot")
}

/// The samples of the text: `name{labels}` to value, checking the form of
/// every line on the way.
fn samples(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(line.starts_with(PREFIX), "{line}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        assert!(value == "NaN" || value.parse::<f64>().is_ok(), "{line}");
        assert!(out.insert(series.to_owned(), value.to_owned()).is_none(), "a series twice: {line}");
    }
    out
}

#[test]
fn every_family_has_help_and_type_and_the_prefix() {
    let text = render(&snapshot(Vec::new()));
    let families = [
        ("service_up", "gauge"),
        ("service_ready", "gauge"),
        ("service_restarts_total", "counter"),
        ("service_last_exit_code", "gauge"),
        ("service_state", "gauge"),
        ("service_uptime_seconds", "gauge"),
        ("service_transcript_bytes_total", "counter"),
        ("service_transcript_dropped_bytes_total", "counter"),
        ("service_health_failures_total", "counter"),
        ("events_total", "counter"),
        ("control_requests_total", "counter"),
    ];
    for (name, kind) in families {
        assert!(text.contains(&format!("\n# TYPE supervisor_{name} {kind}\n")), "{name}: {text}");
        assert!(text.contains(&format!("# HELP supervisor_{name} ")), "{name}");
    }
    assert_eq!(text.matches("# TYPE ").count(), families.len());
    let s = samples(&text);
    assert_eq!(s.get("supervisor_events_total").map(String::as_str), Some("42"));
    assert_eq!(s.get("supervisor_control_requests_total").map(String::as_str), Some("7"));
}

#[test]
fn each_service_has_its_samples() {
    let web = service(
        "web",
        &json!({"state": "running", "pid": 10, "uptime_s": 2.5, "restarts": 3, "ready": true,
               "last_exit": {"signal": "KILL"}, "transcript_bytes": 1000, "dropped_bytes": 9,
               "health": {"state": "healthy", "failures": 0, "failures_total": 4, "last_output": null}}),
    );
    let job = service("job", &json!({"state": "exited", "last_exit": {"code": 3}}));
    let new = service("new", &json!({}));
    let s = samples(&render(&snapshot(vec![web, job, new])));
    let get = |k: &str| s.get(k).map_or_else(|| panic!("no {k} in {s:#?}"), String::as_str);
    assert_eq!(get(r#"supervisor_service_up{service="web"}"#), "1");
    assert_eq!(get(r#"supervisor_service_up{service="job"}"#), "0");
    assert_eq!(get(r#"supervisor_service_ready{service="web"}"#), "1");
    assert_eq!(get(r#"supervisor_service_ready{service="job"}"#), "0");
    assert_eq!(get(r#"supervisor_service_restarts_total{service="web"}"#), "3");
    assert_eq!(get(r#"supervisor_service_last_exit_code{service="web"}"#), "137", "128 + SIGKILL");
    assert_eq!(get(r#"supervisor_service_last_exit_code{service="job"}"#), "3");
    assert!(!s.contains_key(r#"supervisor_service_last_exit_code{service="new"}"#), "never exited: no sample");
    assert_eq!(get(r#"supervisor_service_uptime_seconds{service="web"}"#), "2.5");
    assert_eq!(get(r#"supervisor_service_uptime_seconds{service="job"}"#), "0");
    assert_eq!(get(r#"supervisor_service_transcript_bytes_total{service="web"}"#), "1000");
    assert_eq!(get(r#"supervisor_service_transcript_dropped_bytes_total{service="web"}"#), "9");
    assert_eq!(get(r#"supervisor_service_health_failures_total{service="web"}"#), "4");
    assert_eq!(get(r#"supervisor_service_health_failures_total{service="job"}"#), "0");
    for (name, state) in [("web", ServiceState::Running), ("job", ServiceState::Exited), ("new", ServiceState::Stopped)]
    {
        for other in ServiceState::ALL {
            let key = format!(r#"supervisor_service_state{{service="{name}",state="{other}"}}"#);
            assert_eq!(get(&key), if other == state { "1" } else { "0" }, "{key}");
        }
    }
}

#[test]
fn label_values_are_escaped() {
    let text = render(&snapshot(vec![service("a\\b\"c\nd", &json!({}))]));
    assert!(text.contains(r#"supervisor_service_up{service="a\\b\"c\nd"} 0"#), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("supervisor_service_up{")).count(), 1);
}

#[test]
fn values_that_are_not_finite_are_spelled_as_the_format_says() {
    let mut out = String::new();
    for v in [Value::Float(f64::NAN), Value::Float(f64::INFINITY), Value::Float(f64::NEG_INFINITY), Value::Signed(-1)] {
        v.write(&mut out);
        out.push(' ');
    }
    assert_eq!(out, "NaN +Inf -Inf -1 ");
}

#[test]
fn addresses_parse_as_documented() {
    let tcp = |s: &str| MetricsAddr::Tcp(s.parse().unwrap());
    assert_eq!("9100".parse(), Ok(tcp("127.0.0.1:9100")));
    assert_eq!(":9100".parse(), Ok(tcp("127.0.0.1:9100")));
    assert_eq!("localhost:9100".parse(), Ok(tcp("127.0.0.1:9100")));
    assert_eq!("0.0.0.0:9100".parse(), Ok(tcp("0.0.0.0:9100")));
    assert_eq!("[::1]:9100".parse(), Ok(tcp("[::1]:9100")));
    assert_eq!("/run/m.sock".parse(), Ok(MetricsAddr::Unix("/run/m.sock".into())));
    assert_eq!("run/m.sock".parse(), Ok(MetricsAddr::Unix("run/m.sock".into())));
    for bad in ["", ":", "x", "65536", "-1", "+1", "host:9100", "127.0.0.1", "127.0.0.1:", "::1:9100", "9100 ", "a/\0"]
    {
        assert_eq!(bad.parse::<MetricsAddr>(), Err(MetricsAddrError), "{bad:?}");
    }
    assert_eq!(tcp("127.0.0.1:9100").to_string(), "127.0.0.1:9100");
    assert_eq!(MetricsAddr::Unix("/x/m.sock".into()).to_string(), "/x/m.sock");
}
