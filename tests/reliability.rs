//! Faults and hostile conditions on real processes: each test holds the
//! supervisor to what it must do when things go wrong, and prints the
//! figure it measured. The quick forms run with the suite; the long forms
//! are `#[ignore]`d: `cargo test --test tests -- --ignored reliability`.

use std::fs;
use std::process::{Child, Command};
use std::time::Duration;

use crate::util::{alive, helper, Fixture};

const T: Duration = Duration::from_secs(15);

/// The start time of `pid` (clock ticks since boot), field 22 of its stat.
fn start_time(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(')').expect("comm").1;
    after.split_whitespace().nth(19).expect("field 22").parse().expect("a number")
}

/// A process that has nothing to do with the supervisor.
struct Bystander(Child);

impl Bystander {
    fn spawn() -> Bystander {
        Bystander(Command::new(helper()).arg("sleep").spawn().expect("spawn"))
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn reliability_a_state_file_from_another_boot_never_signals_a_live_process() {
    // After a reboot, pids and start times (counted from boot) repeat: a
    // saved pid with a matching start time may be anybody's process.
    for boot_id in [Some("00000000-0000-0000-0000-000000000000"), None] {
        let bystander = Bystander::spawn();
        let pid = bystander.0.id();
        let mut f = Fixture::new("[service.web]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\n");
        let saved = serde_json::json!({
            "boot_id": boot_id,
            "services": { "web": { "wanted": "running", "pid": pid, "start_time": start_time(pid) } },
        });
        fs::create_dir_all(f.path("rt/run")).unwrap();
        fs::write(f.path("rt/run/state.json"), saved.to_string()).unwrap();
        f.start();
        f.wait_state("web", "running", T);
        assert!(alive(pid as i32), "the supervisor signalled an unrelated process (boot id {boot_id:?})");
        assert!(!f.log().contains("left by a previous supervisor"), "{}", f.log());
        println!("state file from {}: bystander untouched", boot_id.map_or("no boot", |_| "another boot"));
    }
}

#[test]
fn reliability_services_do_not_inherit_the_command_lines_control_variables() {
    let mut f = Fixture::new("[service.env]\ncommand = [\"HELPER\", \"report\", \"DIR/env.txt\"]\n");
    f.start();
    let report = crate::util::wait_for("the report", T, || fs::read_to_string(f.path("env.txt")).ok());
    let leaked: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.starts_with("env SUPERVISOR_")
                && !l.starts_with("env SUPERVISOR_SERVICE=")
                && !l.starts_with("env SUPERVISOR_INSTANCE=")
        })
        .collect();
    assert!(leaked.is_empty(), "leaked into the service: {leaked:?}");
}

#[test]
fn reliability_a_low_open_files_limit_does_not_stop_a_hundred_services() {
    // The supervisor raises its own soft limit to the hard one; services
    // get back the limit it was started with.
    let mut services = String::new();
    for i in 0..100 {
        services.push_str(&format!(
            "[service.s{i}]\ncommand = [\"HELPER\", \"limits\", \"DIR/limits-{i}\"]\nmin_uptime = \"50ms\"\n"
        ));
    }
    let mut f = Fixture::new(&services);
    f.start_with_ulimit("-Sn 64");
    for i in 0..100 {
        f.wait_state(&format!("s{i}"), "running", T);
    }
    let limits = crate::util::wait_for("a service's limits", T, || fs::read_to_string(f.path("limits-99")).ok());
    assert!(limits.lines().any(|l| l == "nofile=64"), "{limits}");
    println!("100 services up with a soft limit of 64 open files; each service kept 64");
}
