//! More faults on real processes, as in `reliability.rs` (same naming, so
//! that `cargo test --test tests reliability` runs both): output under a
//! fast writer while its files are rotated and reopened, fork failures,
//! a wall clock stepped back and forward, stale pidfiles naming live
//! processes. Each test prints its figure.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::reliability::Bystander;
use crate::util::{alive, wait_for, Fixture};

const T: Duration = Duration::from_secs(20);

/// Reads every file in `dir` whose name starts with `web.log`, and checks
/// that each line ends with a whole `NNNNNNNN xxx...` payload of `len - 1`
/// bytes. Returns the sequence numbers seen (each once) and how many lines
/// were split or doubled.
fn sequence_numbers(dir: &Path, len: usize) -> (BTreeSet<usize>, usize, usize) {
    let mut seen = BTreeSet::new();
    let (mut split, mut doubled) = (0, 0);
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if !entry.file_name().to_string_lossy().starts_with("web.log") {
            continue;
        }
        // Renamed by a rotation since the listing: counted at the next look.
        let Ok(text) = fs::read_to_string(entry.path()) else { continue };
        for line in text.lines() {
            let payload = line.rsplit(' ').nth(1).zip(line.rsplit(' ').next());
            let whole = payload.and_then(|(seq, xs)| {
                let ok = seq.len() == 8 && xs.len() == len - 10 && xs.bytes().all(|b| b == b'x');
                ok.then(|| seq.parse::<usize>().ok()).flatten()
            });
            match whole {
                Some(n) if !seen.insert(n) => doubled += 1,
                Some(_) => {}
                None => split += 1,
            }
        }
    }
    (seen, split, doubled)
}

fn fast_writer_with_rotations_and_reopens(lines: usize, rate: usize) {
    const LEN: usize = 50;
    let mut f = Fixture::new(&format!(
        "[service.web]\ncommand = [\"HELPER\", \"paced\", \"{lines}\", \"{LEN}\", \"{rate}\"]\n\
         min_uptime = \"50ms\"\ntranscript = {{ path = \"DIR/logs/web.log\", max_size = \"{}\", keep = 1000 }}\n",
        lines * LEN / 20,
    ));
    fs::create_dir_all(f.path("logs")).unwrap();
    let t0 = Instant::now();
    f.start();
    let log = f.path("logs/web.log");
    // Ten times: move the file away as logrotate does, then `reopen`; the
    // next file appears once the supervisor writes again.
    for round in 0..10 {
        wait_for("the transcript to be written", T, || (fs::metadata(&log).ok()?.len() > 0).then_some(()));
        fs::rename(&log, f.path(&format!("logs/web.log.moved-{round}"))).unwrap();
        let (code, _, err) = f.cli_code(&["reopen", "web"]);
        assert_eq!(code, 0, "{err}");
    }
    // Read while the supervisor rotates, a file may be seen under two
    // names: count only; once every line is there, nothing moves.
    wait_for("every line to be written (none lost)", Duration::from_mins(2), || {
        (sequence_numbers(&f.path("logs"), LEN).0.len() >= lines).then_some(())
    });
    let elapsed = t0.elapsed();
    let (seen, split, doubled) = sequence_numbers(&f.path("logs"), LEN);
    let rotated = fs::read_dir(f.path("logs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().trim_start_matches("web.log.").parse::<u32>().is_ok())
        .count();
    assert_eq!((split, doubled), (0, 0), "split or doubled lines");
    assert_eq!(seen.len(), lines, "lines lost");
    assert_eq!(seen.last(), Some(&(lines - 1)));
    assert!(rotated >= 10, "only {rotated} rotations");
    let s = f.service("web");
    assert_eq!(s["dropped_bytes"].as_u64().unwrap_or(0), 0, "{s}");
    println!(
        "{lines} lines written at {rate}/s: {} lost, 0 split, 0 doubled, through {rotated} rotations and 10 \
         renames with reopen, in {:.1} s ({:.0} lines/s end to end)",
        lines - seen.len(),
        elapsed.as_secs_f64(),
        lines as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn reliability_a_fast_writer_loses_no_line_through_rotations_and_reopens() {
    fast_writer_with_rotations_and_reopens(200_000, 100_000);
}

#[test]
#[ignore = "long form: 1,000,000 lines at 100k/s; run with --ignored reliability"]
fn reliability_a_fast_writer_loses_no_line_through_rotations_and_reopens_long() {
    fast_writer_with_rotations_and_reopens(1_000_000, 100_000);
}

/// A uid and gid of no user: no other process here has them, so that
/// the `RLIMIT_NPROC` of the supervisor that runs with them counts only
/// itself, its services and the test's own placeholders.
const LONER: u32 = 64_123;

#[test]
fn reliability_fork_failures_back_off_and_recover() {
    // RLIMIT_NPROC does not bind root: the supervisor runs as another uid,
    // limited to 12 processes, 6 of them held by placeholders: room for
    // the supervisor and 5 of its 10 services.
    // Processes of the same uid, each holding a slot of its limit.
    let placeholders: Vec<Bystander> = (0..6).map(|_| Bystander::of_user(LONER)).collect();
    let mut services = String::new();
    for i in 0..10 {
        services.push_str(&format!("[service.s{i:02}]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"50ms\"\n"));
        services.push_str("backoff_limit = \"500ms\"\nforever = true\n");
    }
    let mut f = Fixture::new(&services);
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(f.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    }
    f.start_with_shell(&format!(
        "exec prlimit --nproc=12 setpriv --reuid={LONER} --regid={LONER} --clear-groups \"$@\""
    ));
    let (running, waiting) = wait_for("some services to run and the others to wait", T, || {
        let st = f.status();
        let all = st["services"].as_array()?.clone();
        let running = all.iter().filter(|s| s["state"] == "running").count();
        let waiting: Vec<_> = all.iter().filter(|s| s["state"] != "running").cloned().collect();
        let explained = waiting.iter().all(|s| s["error"].as_str().is_some_and(|e| e.contains("RLIMIT_NPROC")));
        (running == 5 && explained).then_some((running, waiting))
    });
    for s in &waiting {
        assert!(matches!(s["state"].as_str(), Some("backoff" | "starting")), "{s}");
    }
    assert!(f.log().contains("a process limit is reached"), "{}", f.log());
    assert!(!f.log().contains(": ; backing off"), "a backoff without its reason: {}", f.log());
    // Room again: every service comes up, the first five untouched.
    let pids: Vec<i64> = f.status()["services"].as_array().unwrap().iter().filter_map(|s| s["pid"].as_i64()).collect();
    drop(placeholders);
    let t0 = Instant::now();
    wait_for("every service to run", T, || {
        let st = f.status();
        st["services"].as_array()?.iter().all(|s| s["state"] == "running").then_some(())
    });
    let recovered = t0.elapsed();
    let now: Vec<i64> = f.status()["services"].as_array().unwrap().iter().filter_map(|s| s["pid"].as_i64()).collect();
    assert!(pids.iter().all(|p| now.contains(p)), "a running service was restarted: {pids:?} {now:?}");
    let (code, _, err) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0, "{err}");
    println!(
        "fork failures (RLIMIT_NPROC): {running} running, {} waiting with EAGAIN in backoff, the reason in the \
         status and the log; all 10 running {:.2} s after processes were free again, none restarted",
        waiting.len(),
        recovered.as_secs_f64()
    );
}

/// libfaketime, which makes a process's wall clock read a file of our
/// own, and leaves its monotonic clock alone (`.ci/run` installs it).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// (pid, restarts, task runs) of the three services below.
fn clock_figures(f: &Fixture) -> (i64, u64, u64) {
    let web = f.service("web");
    assert_eq!(web["state"], "running", "{web}");
    let flap = f.service("flap")["restarts"].as_u64().unwrap();
    let tick = f.service("tick")["runs"].as_u64().unwrap();
    (web["pid"].as_i64().unwrap(), flap, tick)
}

#[test]
fn reliability_a_wall_clock_stepped_back_and_forward_changes_no_deadline() {
    assert!(Path::new(FAKETIME).exists(), "{FAKETIME} is missing: apt-get install faketime (.ci/run does)");
    let mut f = Fixture::new(
        "[service.web]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"300ms\"\nenv = { LD_PRELOAD = \"\" }\n\
         [service.flap]\ncommand = [\"HELPER\", \"exit\", \"1\"]\nmin_uptime = \"200ms\"\n\
         backoff_limit = \"300ms\"\nforever = true\nenv = { LD_PRELOAD = \"\" }\n\
         [service.tick]\nkind = \"task\"\ncommand = [\"/bin/true\"]\ninterval = \"200ms\"\nenv = { LD_PRELOAD = \"\" }\n",
    );
    let offset = f.path("faketime");
    fs::write(&offset, "+0\n").unwrap();
    f.start_with_shell(&format!(
        "export LD_PRELOAD={FAKETIME} FAKETIME_TIMESTAMP_FILE={} FAKETIME_NO_CACHE=1 \
         FAKETIME_DONT_FAKE_MONOTONIC=1 && exec \"$@\"",
        offset.display()
    ));
    f.wait_state("web", "running", T);
    let mut figures = Vec::new();
    for (step, text) in [("back", "-3600"), ("forward", "+86400")] {
        let (pid, flaps, ticks) = clock_figures(&f);
        let t0 = Instant::now();
        fs::write(&offset, format!("{text}\n")).unwrap();
        wait_for("the step to be logged", T, || f.log().contains(&format!("wall clock stepped {step}")).then_some(()));
        // Two seconds on: the same process, and as many restarts and task
        // runs as two seconds allow (never a burst, never a stall).
        wait_for("two seconds of the services' lives", T, || (t0.elapsed() >= Duration::from_secs(2)).then_some(()));
        let (pid2, flaps2, ticks2) = clock_figures(&f);
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(pid2, pid, "web was restarted by a {step} step");
        assert!(
            ticks2 > ticks && ticks2 - ticks <= (secs / 0.2) as u64 + 2,
            "task runs {ticks} -> {ticks2} in {secs} s"
        );
        assert!(
            flaps2 > flaps && flaps2 - flaps <= (secs / 0.3) as u64 + 2,
            "restarts {flaps} -> {flaps2} in {secs} s"
        );
        let uptime = f.service("web")["uptime_s"].as_f64().unwrap_or(0.0);
        assert!((0.0..3600.0).contains(&uptime), "uptime {uptime} after a {step} step");
        figures.push(format!(
            "{step} {text} s: web kept, {} task runs and {} restarts in {secs:.1} s",
            ticks2 - ticks,
            flaps2 - flaps
        ));
    }
    assert_eq!(f.log().matches("wall clock stepped").count(), 2, "each step is logged once: {}", f.log());
    println!("wall clock stepped: {}; each step logged once", figures.join("; "));
}

#[test]
fn reliability_stale_pidfiles_naming_live_processes_are_never_signalled() {
    // A pidfile is believed only while its writer holds its lock: one left
    // behind names a pid that may be anybody's by now.
    let bystander = Bystander::spawn();
    let pid = bystander.pid();
    let mut f = Fixture::new(&format!(
        "[service.web]\ncommand = [\"HELPER\", \"sleep\"]\nmin_uptime = \"100ms\"\npidfile = \"{}/web.pid\"\n",
        "DIR"
    ));
    fs::create_dir_all(f.path("rt/run")).unwrap();
    for file in ["rt/run/supervisor.pid", "web.pid", "daemon.pid"] {
        fs::write(f.path(file), format!("{pid}\n")).unwrap();
    }
    // Nothing runs yet: the commands that read pidfiles say so.
    let (code, out, _) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0, "{out}");
    let daemon = f.path("daemon.pid").display().to_string();
    let (code, _, _) = f.cli_code(&["daemonize", "--pidfile", &daemon, "--status"]);
    assert_eq!(code, 1, "a stale pidfile is LSB status 1");
    let (code, out, err) = f.cli_code(&["daemonize", "--pidfile", &daemon, "--stop"]);
    assert!(alive(pid), "daemonize --stop signalled the pid of a stale pidfile ({code}: {out}{err})");
    // A supervisor started over the stale files takes them over.
    f.start();
    let web = f.wait_state("web", "running", T);
    assert_eq!(fs::read_to_string(f.path("web.pid")).unwrap().trim(), web["pid"].to_string());
    let (code, _, err) = f.cli_code(&["shutdown"]);
    assert_eq!(code, 0, "{err}");
    assert!(alive(pid), "the bystander named by stale pidfiles was signalled");
    println!("stale pidfiles (supervisor, service, daemonize) naming a live process: never signalled");
}
