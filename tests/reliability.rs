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
