//! Part `peers`: the supervisor beside daemontools, in the same run, on
//! 100 idle services that run `sleep` (issue #11's targets).
//!
//! - Memory: the PSS of the supervisor process against that of `svscan`
//!   plus its 100 `supervise` (target: at most 0.3 ×); the private
//!   (anonymous) memory per additional service, from 100 to 1000 services
//!   (target: at most 5 KB).
//! - Client commands, whole processes timed from outside, in turn:
//!   `supervisor status NAME` against `svstat DIR` (target: at most
//!   1.2 ×), and `supervisor stop NAME` (which returns once the process
//!   is gone) against `svc -d DIR` plus the wait for the process to go
//!   (target: at most 1.5 ×).
//!
//! Needs daemontools (`svscan`, `supervise`, `svc`, `svstat` on `PATH`);
//! without them the part says so and measures nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ms, smaps_rollup_kb, svc_name, wait_for, Bins, Instance, Memory, Report, Res, Settings, Summary};

/// `n` services that run `sleep`, with their output discarded.
fn sleep_services(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let name = svc_name(i);
        text +=
            &format!("\n[service.{name}]\ncommand = [\"sleep\", \"1000000\"]\nstdout = \"null\"\nstderr = \"null\"\n");
    }
    text
}

/// A supervisor of `n` sleeping services, running and settled.
fn ours(bins: &Bins, n: usize) -> Res<Instance> {
    let mut inst = Instance::with_services_text(bins, |_| sleep_services(n))?;
    inst.launch()?;
    inst.wait_ready()?;
    inst.wait_all(supervisor_core::ServiceState::Running, Duration::from_mins(2))?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(inst)
}

/// `svscan` of a directory of `n` service directories that run `sleep`.
struct Daemontools {
    dir: tempfile::TempDir,
    svscan: Child,
}

impl Daemontools {
    fn start(n: usize) -> Res<Daemontools> {
        let dir = tempfile::Builder::new().prefix("sv-bench-dt-").tempdir_in("/tmp")?;
        for i in 0..n {
            let svc = dir.path().join(svc_name(i));
            fs::create_dir(&svc)?;
            let run = svc.join("run");
            fs::write(&run, "#!/bin/sh\nexec sleep 1000000\n")?;
            fs::set_permissions(&run, fs::Permissions::from_mode(0o755))?;
        }
        let svscan = Command::new("svscan").arg(dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let dt = Daemontools { dir, svscan };
        wait_for("daemontools to start every service", Duration::from_mins(1), Duration::from_millis(100), || {
            Ok((0..n).all(|i| dt.pid(i).is_some()).then_some(()))
        })?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(dt)
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.path().join(svc_name(i))
    }

    /// The pid `svstat` reports for service `i`, when it is up.
    fn pid(&self, i: usize) -> Option<i32> {
        let out = Command::new("svstat").arg(self.path(i)).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let rest = text.split("up (pid ").nth(1)?;
        rest.split(')').next()?.parse().ok()
    }

    /// PSS of `svscan` and every `supervise`, in kB.
    fn pss(&self) -> Res<u64> {
        let mut total = smaps_rollup_kb(self.svscan.id() as i32, "Pss")?;
        for pid in supervisor_core::process::children(self.svscan.id() as i32) {
            total += smaps_rollup_kb(pid, "Pss")?;
        }
        Ok(total)
    }
}

impl Drop for Daemontools {
    fn drop(&mut self) {
        let _ = self.svscan.kill();
        let _ = self.svscan.wait();
        for i in 0.. {
            let dir = self.path(i);
            if !dir.exists() {
                break;
            }
            let _ = Command::new("svc").arg("-dx").arg(&dir).status();
        }
    }
}

/// Runs `cmd` to completion; its wall time in ms, or its failure.
fn timed(cmd: &mut Command) -> Res<f64> {
    let start = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    let wall = ms(start.elapsed());
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(wall)
}

fn supervisor(bins: &Bins, inst: &Instance, args: &[&str]) -> Command {
    let mut cmd = Command::new(&bins.supervisor);
    cmd.arg("-c").arg(inst.path("supervisor.toml")).args(args);
    cmd
}

/// Both sides of a comparison, run in turn.
fn in_turn(runs: usize, mut a: impl FnMut() -> Res<f64>, mut b: impl FnMut() -> Res<f64>) -> Res<(Summary, Summary)> {
    let (mut xs, mut ys) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        xs.push(a()?);
        ys.push(b()?);
    }
    Ok((Summary::of(&xs), Summary::of(&ys)))
}

/// Part `peers`.
pub(super) fn bench_peers(bins: &Bins, settings: &Settings, report: &mut Report) -> Res<()> {
    if Command::new("svscan").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        report.info("beside daemontools", "not measured: svscan is not installed".into());
        return Ok(());
    }
    println!("beside daemontools: memory and client commands, 100 idle services...");
    let dt = Daemontools::start(100)?;
    let inst = ours(bins, 100)?;
    let mem = Memory::of(inst.pid())?;
    let dt_pss = dt.pss()?;
    let ratio = mem.pss as f64 / dt_pss as f64;
    report.check(
        "PSS, 100 idle services: ours / daemontools",
        format!("{} kB / {dt_pss} kB = {ratio:.2} x (ours: anonymous {} kB)", mem.pss, mem.pss_anon),
        "<= 0.3 x",
        ratio <= 0.3,
    );

    let runs = settings.runs.max(50);
    let (status, svstat) = in_turn(
        runs,
        || timed(&mut supervisor(bins, &inst, &["status", &svc_name(0)])),
        || timed(Command::new("svstat").arg(dt.path(0))),
    )?;
    let ratio = status.median / svstat.median;
    report.check(
        "status NAME / svstat DIR (whole process)",
        format!("median {:.3} / {:.3} ms = {ratio:.2} x", status.median, svstat.median),
        "<= 1.2 x",
        ratio <= 1.2,
    );

    let name = svc_name(1);
    let stop_ours = || -> Res<f64> {
        let wall = timed(&mut supervisor(bins, &inst, &["stop", &name]))?;
        timed(&mut supervisor(bins, &inst, &["start", &name]))?;
        Ok(wall)
    };
    let stop_dt = || -> Res<f64> {
        let pid =
            wait_for("the service to be up", Duration::from_secs(10), Duration::from_millis(5), || Ok(dt.pid(1)))?;
        let start = Instant::now();
        timed(Command::new("svc").arg("-d").arg(dt.path(1)))?;
        if !supervisor_core::process::wait_gone(pid, Duration::from_secs(10)) {
            return Err(format!("daemontools' service (pid {pid}) did not stop").into());
        }
        let wall = ms(start.elapsed());
        timed(Command::new("svc").arg("-u").arg(dt.path(1)))?;
        Ok(wall)
    };
    let (stop, down) = in_turn(runs.min(50), stop_ours, stop_dt)?;
    let ratio = stop.median / down.median;
    report.check(
        "stop NAME / svc -d DIR + the exit (whole process)",
        format!("median {:.3} / {:.3} ms = {ratio:.2} x", stop.median, down.median),
        "<= 1.5 x",
        ratio <= 1.5,
    );
    drop(inst);
    drop(dt);

    println!("private memory per service, 100 and 1000 services...");
    let (n0, n1) = (100, if settings.quick { 300 } else { 1000 });
    let small = Memory::of(ours(bins, n0)?.pid())?;
    let large = {
        let inst = ours(bins, n1)?;
        Memory::of(inst.pid())?
    };
    let per = (large.pss_anon as f64 - small.pss_anon as f64) / (n1 - n0) as f64;
    report.check(
        &format!("private memory per service, {n0} -> {n1} services"),
        format!("{per:.2} kB ({} kB -> {} kB anonymous)", small.pss_anon, large.pss_anon),
        "<= 5 KB",
        per <= 5.0,
    );
    Ok(())
}
