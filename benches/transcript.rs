//! Transcript throughput: a service that writes 200 MB (20 MB with
//! `BENCH_QUICK`) of 100-byte lines as fast as it can
//! (`sv-test-helper lines COUNT 100`), with its transcript plain, and with
//! RFC 3339 timestamps and rotation; beside the same writer piped into
//! `cat > FILE` in the same directory. Also the CPU time the supervisor
//! (or `cat`) spends per MB.
//!
//! After a short warm-up (the baseline with a tenth of the lines), each
//! round runs the `cat` baseline, then one supervisor with two
//! services that are configured `expected = "stopped"`: `plain` and
//! `stamped`. A service's time runs from just before the `start` request
//! on the control socket (the supervisor is already up and idle, so its
//! own start-up is left out, and its CPU time can be read just before the
//! writer exists) until its transcript files hold every byte; the
//! baseline's from just before `sh` is spawned until `cat`'s file holds
//! every byte. Every line is then checked: present once, whole, in order.
//! The files are removed and `sync` is called after each run, so that the
//! writeback of one run does not land in the next.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use supervisor_core::protocol::{Command as Request, Selection};

use crate::{toml_str, Bins, Instance, Report, Res, Settings, Summary};

/// The length of each line the writer writes, newline included.
const LINE: usize = 100;
/// `2026-11-21T07:30:00.123456Z `: what `timestamps = "rfc3339"` puts
/// before each line (`d` stands for a digit).
const RFC3339_PATTERN: &[u8; 28] = b"dddd-dd-ddTdd:dd:dd.ddddddZ ";
/// How many rotated files the stamped transcript keeps: more than it makes.
const KEEP: usize = 20;
/// How often the files' sizes are looked at while a run goes on.
const POLL: Duration = Duration::from_millis(1);
/// A run is given up when its files stop growing for this long.
const STALL: Duration = Duration::from_secs(15);
/// Decimal megabytes, as in "200 MB".
const MB: f64 = 1e6;

/// The writer's command name in `/proc/PID/comm`.
const WRITER_COMM: &str = "sv-test-helper";
/// The two services of a round.
const PLAIN: &str = "plain";
const STAMPED: &str = "stamped";

/// Where a run's output lands, and what it should look like.
#[derive(Debug, Clone)]
struct Layout {
    /// The file; rotated copies are `PATH.1` (newest) ... `PATH.keep`.
    path: PathBuf,
    /// Rotated files kept (0: no rotation).
    keep: usize,
    /// The largest a file may be.
    max_size: Option<u64>,
    /// Whether each line starts with an RFC 3339 timestamp.
    stamped: bool,
}

impl Layout {
    /// One file, lines as written.
    fn plain(path: PathBuf) -> Layout {
        Layout { path, keep: 0, max_size: None, stamped: false }
    }

    /// The length of a line in the file.
    fn line_len(&self) -> usize {
        LINE + if self.stamped { RFC3339_PATTERN.len() } else { 0 }
    }

    /// The files, oldest first: `PATH.keep`, ..., `PATH.1`, `PATH`.
    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..=self.keep)
            .rev()
            .map(|n| {
                let mut p = self.path.clone().into_os_string();
                p.push(format!(".{n}"));
                PathBuf::from(p)
            })
            .collect();
        files.push(self.path.clone());
        files
    }

    /// The bytes in the files now. They are looked at oldest first: a
    /// rotation moves bytes to older names, so one that happens meanwhile
    /// can make this count too low, never too high.
    #[allow(clippy::unused_self)] // read beside the layout's other questions
    fn size_now(&self, files: &[PathBuf]) -> u64 {
        files.iter().filter_map(|f| fs::metadata(f).ok()).map(|m| m.len()).sum()
    }

    /// Removes the files.
    fn remove(&self) -> Res<()> {
        for f in self.files() {
            match fs::remove_file(&f) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(format!("{}: {e}", f.display()).into()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// CPU time of a process so far.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// `utime` and `stime` of `/proc/PID/stat`, in clock ticks.
    user_ticks: u64,
    sys_ticks: u64,
    /// Time on a CPU, in ns, from `/proc/PID/schedstat` (finer grained).
    run_ns: u64,
}

impl Cpu {
    /// Reads `/proc/PID/stat` and `/proc/PID/schedstat`.
    fn of(pid: i32) -> Res<Cpu> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let rest = &stat[stat.rfind(')').ok_or("bad stat")? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        // rest[0] is field 3; utime and stime are fields 14 and 15.
        let sched = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
        Ok(Cpu {
            user_ticks: fields[11].parse()?,
            sys_ticks: fields[12].parse()?,
            run_ns: sched.split(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0),
        })
    }

    /// What was used between `self` and `later`.
    fn until(self, later: Cpu) -> Cpu {
        Cpu {
            user_ticks: later.user_ticks - self.user_ticks,
            sys_ticks: later.sys_ticks - self.sys_ticks,
            run_ns: later.run_ns - self.run_ns,
        }
    }

    /// User and system seconds.
    fn secs(&self) -> (f64, f64) {
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        (self.user_ticks as f64 / hz, self.sys_ticks as f64 / hz)
    }
}

/// What one run of a writer gave.
#[derive(Debug, Clone)]
struct Run {
    /// Until the last byte was in the files.
    wall: Duration,
    /// The reader's CPU time (the supervisor or `cat`), when known.
    cpu: Option<Cpu>,
    /// The writer's CPU time, when known.
    writer: Option<Cpu>,
    /// Bytes in the files.
    file_bytes: u64,
    /// What is wrong with the output (missing, broken or out-of-order
    /// lines), or that it stalled; `None` when every line is there.
    problem: Option<String>,
}

impl Run {
    /// The writer's output in MB/s.
    fn mb_s(&self, bytes: u64) -> f64 {
        bytes as f64 / MB / self.wall.as_secs_f64()
    }

    /// The reader's CPU time per MB of the writer's output, in ms:
    /// (user + system, user, system) from the clock ticks.
    fn cpu_ms_per_mb(&self, bytes: u64) -> Option<(f64, f64, f64)> {
        let (user, sys) = self.cpu?.secs();
        let per = |s: f64| s * 1e3 / (bytes as f64 / MB);
        Some((per(user + sys), per(user), per(sys)))
    }

    /// How busy the reader and the writer were: their time on a CPU
    /// (schedstat) over the wall time, in %.
    fn busy(&self) -> (Option<f64>, Option<f64>) {
        let share = |c: Option<Cpu>| c.map(|c| c.run_ns as f64 / 1e9 / self.wall.as_secs_f64() * 100.0);
        (share(self.cpu), share(self.writer))
    }
}

/// A process group (the baseline's shell, writer and `cat`), killed when
/// dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(-(self.0.id() as i32)), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// A writer started by the supervisor, killed when dropped if it still
/// runs (normally the `stop` request has ended it by then).
struct Orphan(Option<i32>);

impl Drop for Orphan {
    fn drop(&mut self) {
        let Some(pid) = self.0 else { return };
        if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == WRITER_COMM) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Waits until the files of `layout` hold `expected` bytes; returns the
/// time since `t0`, or what went wrong when they stop growing (or grow
/// past it). `check` is called now and then, to fail early.
fn wait_written(
    layout: &Layout,
    expected: u64,
    t0: Instant,
    mut check: impl FnMut() -> Res<()>,
) -> Res<Result<Duration, String>> {
    let files = layout.files();
    let (mut last, mut grew_at, mut polls) = (0, Instant::now(), 0u64);
    loop {
        let size = layout.size_now(&files);
        if size >= expected {
            let wall = t0.elapsed();
            if size > expected {
                return Ok(Err(format!("{size} bytes written, {expected} expected")));
            }
            return Ok(Ok(wall));
        }
        if size != last {
            (last, grew_at) = (size, Instant::now());
        } else if grew_at.elapsed() > STALL {
            return Ok(Err(format!("stalled at {size} of {expected} bytes for {STALL:?}")));
        }
        polls += 1;
        if polls % 100 == 0 {
            check()?;
        }
        std::thread::sleep(POLL);
    }
}

/// Checks that the files of `layout`, oldest first, hold lines
/// `0..lines` of the writer, each once, whole and in order (with
/// non-decreasing timestamps, when stamped), and that no file is larger
/// than allowed and none ends inside a line.
fn verify(layout: &Layout, lines: usize) -> Result<(), String> {
    let len = layout.line_len();
    let prefix = len - LINE;
    let mut next = 0usize;
    let mut prev_stamp: Vec<u8> = Vec::new();
    let mut seen_any = false;
    for file in layout.files() {
        let data = match fs::read(&file) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound && !seen_any => continue,
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        seen_any = true;
        let name = file.display();
        if let Some(max) = layout.max_size.filter(|&m| data.len() as u64 > m) {
            return Err(format!("{name} has {} bytes, more than max_size {max}", data.len()));
        }
        if data.len() % len != 0 {
            return Err(format!("{name} has {} bytes: not whole lines of {len} bytes", data.len()));
        }
        for (i, line) in data.chunks_exact(len).enumerate() {
            let (stamp, text) = line.split_at(prefix);
            if let Some(why) = bad_line(stamp, text, next) {
                let shown = String::from_utf8_lossy(&line[..line.len().min(48)]);
                return Err(format!("{name}, line {}: {why} (expected number {next}): {shown:?}...", i + 1));
            }
            if prefix > 0 {
                if stamp < prev_stamp.as_slice() {
                    return Err(format!("{name}, line {}: timestamp goes back", i + 1));
                }
                prev_stamp.clear();
                prev_stamp.extend_from_slice(stamp);
            }
            next += 1;
        }
    }
    if next != lines {
        return Err(format!("{next} lines found, {lines} written"));
    }
    Ok(())
}

/// What is wrong with a line (`text` is the writer's 100 bytes,
/// `NNNNNNNN xxx...x\n`), given the number it should carry.
fn bad_line(stamp: &[u8], text: &[u8], expected: usize) -> Option<&'static str> {
    if !stamp.is_empty()
        && !stamp.iter().zip(RFC3339_PATTERN).all(|(&b, &p)| if p == b'd' { b.is_ascii_digit() } else { b == p })
    {
        return Some("no RFC 3339 timestamp");
    }
    let (digits, rest) = text.split_at(8);
    let mut n = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Some("no line number");
        }
        n = n * 10 + usize::from(d - b'0');
    }
    if n != expected {
        return Some("wrong line number: a line is missing, repeated or out of order");
    }
    let (body, end) = rest.split_at(rest.len() - 1);
    if body[0] != b' ' || !body[1..].iter().all(|&b| b == b'x') || end != b"\n" {
        return Some("broken line");
    }
    None
}

/// Removes a run's files and flushes what else is waiting to be written
/// back, so that the next run starts with a quiet disk.
fn clean_up(layout: &Layout) -> Res<()> {
    layout.remove()?;
    nix::unistd::sync();
    Ok(())
}

/// The writer piped into `cat > DIR/cat.log` by `sh`.
fn run_baseline(bins: &Bins, dir: &Path, lines: usize) -> Res<Run> {
    let layout = Layout::plain(dir.join("cat.log"));
    let expected = (lines * LINE) as u64;
    let t0 = Instant::now();
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#""$1" lines "$2" "$3" | cat > "$4""#)
        .arg("sh")
        .arg(&bins.helper)
        .arg(lines.to_string())
        .arg(LINE.to_string())
        .arg(&layout.path)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()?;
    let mut group = Group(child);
    let done = wait_written(&layout, expected, t0, || match group.0.try_wait()? {
        Some(status) => Err(format!("the baseline's shell exited ({status})").into()),
        None => Ok(()),
    })?;
    let cpu = find_child(group.0.id() as i32, "cat").and_then(|pid| Cpu::of(pid).ok());
    let writer = find_child(group.0.id() as i32, WRITER_COMM).and_then(|pid| Cpu::of(pid).ok());
    drop(group);
    let file_bytes = layout.size_now(&layout.files());
    let run = match done {
        Ok(wall) => Run { wall, cpu, writer, file_bytes, problem: verify(&layout, lines).err() },
        Err(problem) => Run { wall: t0.elapsed(), cpu, writer, file_bytes, problem: Some(problem) },
    };
    clean_up(&layout)?;
    Ok(run)
}

/// The child of `parent` whose command is `comm`.
fn find_child(parent: i32, comm: &str) -> Option<i32> {
    let children = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|pid: &i32| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
}

/// Starts service `name` of `inst` and times it until its transcript holds
/// all its lines; then stops it and checks the lines.
fn run_service(inst: &mut Instance, name: &str, layout: &Layout, lines: usize) -> Res<Run> {
    let expected = (lines * layout.line_len()) as u64;
    let sel = Selection::named([name]);
    let mut client = inst.client()?;
    let before = Cpu::of(inst.pid())?;
    let t0 = Instant::now();
    let resp = client.call(Request::Start { sel: sel.clone(), wait: false }, Duration::from_secs(30))?;
    if !resp.ok {
        return Err(format!("start {name}: {resp:?}").into());
    }
    let pid = inst.pid();
    // The writer's command line does not name the temporary directory, so
    // the instance's guard would miss it if the supervisor died: keep it.
    let mut writer_pid = Orphan(None);
    let done = wait_written(layout, expected, t0, || {
        writer_pid.0 = writer_pid.0.or_else(|| find_child(pid, WRITER_COMM));
        inst.check_alive()
    })?;
    let cpu = Some(before.until(Cpu::of(pid)?));
    writer_pid.0 = writer_pid.0.or_else(|| find_child(pid, WRITER_COMM));
    let writer = writer_pid.0.and_then(|pid| Cpu::of(pid).ok());
    let resp = client.call(Request::Stop { sel, wait: true }, Duration::from_secs(30))?;
    if !resp.ok {
        return Err(format!("stop {name}: {resp:?}").into());
    }
    let file_bytes = layout.size_now(&layout.files());
    let run = match done {
        Ok(wall) => Run { wall, cpu, writer, file_bytes, problem: verify(layout, lines).err() },
        Err(problem) => Run { wall: t0.elapsed(), cpu, writer, file_bytes, problem: Some(problem) },
    };
    clean_up(layout)?;
    Ok(run)
}

/// A supervisor with the two writers, stopped until asked for; their
/// transcripts are in `DIR/out`, beside the baseline's file.
fn prepare(bins: &Bins, lines: usize, max_size: u64) -> Res<(Instance, Layout, Layout)> {
    let helper = toml_str(&bins.helper());
    let inst = Instance::with_services_text(bins, |dir| {
        let command = format!("command = [{helper}, \"lines\", \"{lines}\", \"{LINE}\"]");
        let path = |name: &str| toml_str(&dir.join("out").join(format!("{name}.log")).display().to_string());
        format!(
            "\n[service.{PLAIN}]\n{command}\nexpected = \"stopped\"\nrestart = \"never\"\n\
             transcript = {{ path = {} }}\n\
             \n[service.{STAMPED}]\n{command}\nexpected = \"stopped\"\nrestart = \"never\"\n\
             transcript = {{ path = {}, timestamps = \"rfc3339\", max_size = {max_size}, keep = {KEEP} }}\n",
            path(PLAIN),
            path(STAMPED)
        )
    })?;
    let out = inst.path("out");
    fs::create_dir(&out)?;
    let plain = Layout::plain(out.join(format!("{PLAIN}.log")));
    let stamped =
        Layout { path: out.join(format!("{STAMPED}.log")), keep: KEEP, max_size: Some(max_size), stamped: true };
    Ok((inst, plain, stamped))
}

/// The filesystem type and device that hold `path`, from `/proc/mounts`.
fn filesystem_of(path: &Path) -> String {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 2 && path.starts_with(f[1])).then(|| (f[1].len(), format!("{} on {} ({})", f[2], f[0], f[1])))
        })
        .max_by_key(|m| m.0)
        .map_or_else(|| "unknown".into(), |m| m.1)
}

/// The runs of one kind, over the rounds.
#[derive(Debug, Default)]
struct Runs(Vec<Run>);

impl Runs {
    /// Median MB/s of the writer's `bytes`, over the runs without problems.
    fn median_mb_s(&self, bytes: u64) -> Option<f64> {
        let v: Vec<f64> = self.0.iter().filter(|r| r.problem.is_none()).map(|r| r.mb_s(bytes)).collect();
        (!v.is_empty()).then(|| Summary::of(&v).median)
    }

    /// `612, 640, 598` (MB/s of each run; `!` after a run with a problem).
    fn list(&self, bytes: u64) -> String {
        let item = |r: &Run| format!("{:.0}{}", r.mb_s(bytes), if r.problem.is_some() { "!" } else { "" });
        self.0.iter().map(item).collect::<Vec<_>>().join(", ")
    }

    /// The problems, if any: `run 2: ...; run 3: ...`.
    fn problems(&self) -> Option<String> {
        let p: Vec<String> = self
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.problem.as_ref().map(|p| format!("run {}: {p}", i + 1)))
            .collect();
        (!p.is_empty()).then(|| p.join("; "))
    }

    /// `1.23 ms/MB (user 0.20, sys 1.03); runs 1.10-1.30; schedstat 1.25 ms/MB`:
    /// the reader's CPU time per MB of the writer's output (median and
    /// range over the runs, from the clock ticks; and the median from
    /// schedstat, which counts in ns).
    fn cpu_text(&self, bytes: u64) -> String {
        let per: Vec<(f64, f64, f64)> = self.0.iter().filter_map(|r| r.cpu_ms_per_mb(bytes)).collect();
        if per.is_empty() {
            return "unknown".into();
        }
        let total = Summary::of(&per.iter().map(|p| p.0).collect::<Vec<_>>());
        #[allow(clippy::float_cmp)] // the median is one of these very values
        let median = per.iter().find(|p| p.0 == total.median).copied().unwrap_or_default();
        let min = per.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let sched: Vec<f64> =
            self.0.iter().filter_map(|r| r.cpu).map(|c| c.run_ns as f64 / 1e6 / (bytes as f64 / MB)).collect();
        format!(
            "{:.2} ms/MB (user {:.2}, sys {:.2}); runs {min:.2}-{:.2}; schedstat {:.2} ms/MB",
            median.0,
            median.1,
            median.2,
            total.max,
            Summary::of(&sched).median
        )
    }

    /// `reader 38 %, writer 97 %`: the medians of [`Run::busy`].
    fn busy_text(&self) -> String {
        let median = |v: Vec<f64>| if v.is_empty() { "?".into() } else { format!("{:.0} %", Summary::of(&v).median) };
        let reader = median(self.0.iter().filter_map(|r| r.busy().0).collect());
        let writer = median(self.0.iter().filter_map(|r| r.busy().1).collect());
        format!("reader {reader}, writer {writer}")
    }

    /// The lowest and highest ratio of a run's MB/s to the `cat` run of the
    /// same round, over the rounds where both are valid.
    fn paired(&self, cat: &Runs) -> Option<(f64, f64)> {
        let r: Vec<f64> = self
            .0
            .iter()
            .zip(&cat.0)
            .filter(|(a, b)| a.problem.is_none() && b.problem.is_none())
            .map(|(a, b)| b.wall.as_secs_f64() / a.wall.as_secs_f64())
            .collect();
        let min = r.iter().copied().reduce(f64::min)?;
        Some((min, r.iter().copied().fold(min, f64::max)))
    }
}

/// Transcript throughput, plain and stamped with rotation, against the
/// `cat` baseline, and the supervisor's CPU time per MB.
pub(crate) fn bench_transcript(bins: &Bins, settings: &Settings, report: &mut Report) -> Res<()> {
    let bytes = settings.transcript_bytes;
    let lines = (bytes / LINE as u64) as usize;
    // 20 MB for 200 MB: about 13 files of stamped lines, all kept.
    let max_size = bytes / 10;
    let mb = bytes / 1_000_000;
    println!(
        "transcript throughput: {mb} MB of {LINE}-byte lines ({lines} lines), {} round(s), in /tmp: {}",
        settings.transcript_rounds,
        filesystem_of(Path::new("/tmp"))
    );
    // A warm-up with a tenth of the lines, not counted: the first run
    // otherwise pays for loading the helper and for a cold page cache.
    let warm_up = tempfile::Builder::new().prefix("sv-bench-warm-").tempdir_in("/tmp")?;
    run_baseline(bins, warm_up.path(), lines / 10)?;
    drop(warm_up);
    let (mut cat, mut plain, mut stamped) = (Runs::default(), Runs::default(), Runs::default());
    for round in 0..settings.transcript_rounds {
        let (mut inst, plain_layout, stamped_layout) = prepare(bins, lines, max_size)?;
        let base = run_baseline(bins, &inst.path("out"), lines)?;
        print_run(round, "cat baseline", &base, bytes);
        cat.0.push(base);
        inst.launch()?;
        inst.wait_ready()?;
        std::thread::sleep(Duration::from_millis(200));
        let p = run_service(&mut inst, PLAIN, &plain_layout, lines)?;
        print_run(round, "supervisor, plain", &p, bytes);
        plain.0.push(p);
        let s = run_service(&mut inst, STAMPED, &stamped_layout, lines)?;
        print_run(round, "supervisor, rfc3339 + rotation", &s, bytes);
        stamped.0.push(s);
        inst.shutdown()?;
    }

    let cat_mb_s = cat.median_mb_s(bytes);
    let ratio = |runs: &Runs| {
        let paired = runs.paired(&cat).map_or_else(String::new, |(lo, hi)| format!(", {lo:.2}-{hi:.2} by round"));
        match (runs.median_mb_s(bytes), cat_mb_s) {
            (Some(r), Some(c)) => format!("{r:.0} MB/s = {:.2} x cat ({c:.0} MB/s){paired}", r / c),
            (Some(r), None) => format!("{r:.0} MB/s (no valid cat run)"),
            (None, _) => "no valid run".into(),
        }
    };
    let plain_mb_s = plain.median_mb_s(bytes);
    let met = matches!((plain_mb_s, cat_mb_s), (Some(p), Some(c)) if p >= 0.8 * c) && plain.problems().is_none();
    let mut value = format!("{}; runs [{}] vs cat [{}]", ratio(&plain), plain.list(bytes), cat.list(bytes));
    match plain.problems() {
        None => value.push_str(&format!("; all {lines} lines, whole and in order")),
        Some(p) => value.push_str(&format!("; LINES WRONG: {p}")),
    }
    report.check(&format!("transcript, plain, {mb} MB of 100-byte lines"), value, ">= 0.8 x cat, every line", met);
    let stamped_file: Vec<f64> = stamped.0.iter().map(|r| r.mb_s(r.file_bytes)).collect();
    let mut value = format!(
        "{} ({:.0} MB/s into the files); runs [{}]",
        ratio(&stamped),
        Summary::of(&stamped_file).median,
        stamped.list(bytes)
    );
    match stamped.problems() {
        None => value.push_str(&format!("; all {lines} lines in order over the rotated files")),
        Some(p) => value.push_str(&format!("; LINES WRONG: {p}")),
    }
    report.info(&format!("transcript, rfc3339 + rotation at {} MB", max_size / 1_000_000), value);
    if let Some(p) = cat.problems() {
        report.info("  cat baseline problems", p);
    }
    report.info("  supervisor CPU per MB, plain", plain.cpu_text(bytes));
    report.info("  supervisor CPU per MB, rfc3339 + rotation", stamped.cpu_text(bytes));
    report.info("  cat CPU per MB (baseline)", cat.cpu_text(bytes));
    report.info(
        "  busy share of the wall time",
        format!("cat: {}; plain: {}; stamped: {}", cat.busy_text(), plain.busy_text(), stamped.busy_text()),
    );
    Ok(())
}

/// `  round 1, supervisor, plain: 612 MB/s (327 ms, ...), CPU 0.31 s (...); busy: ...; every line present`.
fn print_run(round: usize, what: &str, run: &Run, bytes: u64) {
    let cpu = run.cpu.map_or_else(String::new, |c| {
        let (user, sys) = c.secs();
        format!(", CPU {:.2} s (user {user:.2}, sys {sys:.2}; schedstat {:.3} s)", user + sys, c.run_ns as f64 / 1e9)
    });
    let busy = |b: Option<f64>| b.map_or_else(|| "?".into(), |b| format!("{b:.0} %"));
    let (reader, writer) = run.busy();
    let cpu = format!("{cpu}; busy: reader {}, writer {}", busy(reader), busy(writer));
    println!(
        "  round {}, {what}: {:.0} MB/s ({:.0} ms, {} bytes in the files){cpu}; {}",
        round + 1,
        run.mb_s(bytes),
        run.wall.as_secs_f64() * 1e3,
        run.file_bytes,
        run.problem.as_deref().unwrap_or("every line present")
    );
}
