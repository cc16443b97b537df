//! Transcripts: where a service's output lands, its line prefixes, rotation
//! under a fast writer, `reopen` and SIGUSR2 after an outside rename, an
//! unwritable transcript that never stops the service, and `logtail`.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{supervisor_bin, wait_for, Fixture};

const T: Duration = Duration::from_secs(15);

/// A service that writes `tick 1`, `tick 2`, ... every 50 ms, forever.
const TICKER: &str = r#"
[service.ticker]
command = 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.05; done'
shell = true
min_uptime = "100ms"
"#;

/// The text of a file, empty when it does not exist.
fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

/// The complete lines of `text` (a last line still being written is left out).
fn whole_lines(text: &str) -> Vec<&str> {
    match text.rfind('\n') {
        Some(end) => text[..end].split('\n').collect(),
        None => Vec::new(),
    }
}

/// The numbers of the `tick N` lines of `text`; every complete line must be one.
fn ticks(text: &str) -> Vec<u64> {
    whole_lines(text)
        .iter()
        .map(|l| l.strip_prefix("tick ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a tick: {l:?}")))
        .collect()
}

/// Panics unless `nums` are consecutive (nothing lost, nothing repeated).
fn assert_consecutive(nums: &[u64], what: &str) {
    assert!(!nums.is_empty(), "{what}: no lines");
    for w in nums.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{what}: a gap or a repeat in {nums:?}");
    }
}

/// `PATH.N`.
fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

fn supervisor_pid(f: &Fixture) -> Pid {
    Pid::from_raw(f.supervisor.as_ref().expect("started").id() as i32)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` as a time, or `None` when it is not that.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 27 {
        return None;
    }
    for (i, c) in b.iter().enumerate() {
        let want = match i {
            4 | 7 => b'-',
            10 => b'T',
            13 | 16 => b':',
            19 => b'.',
            26 => b'Z',
            _ => 0,
        };
        if (want == 0 && !c.is_ascii_digit()) || (want != 0 && *c != want) {
            return None;
        }
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, mo, d, h, mi, sec, micros) =
        (num(0..4), num(5..7), num(8..10), num(11..13), num(14..16), num(17..19), num(20..26));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    Some(UNIX_EPOCH + Duration::new(secs as u64, micros as u32 * 1000))
}

/// `@` and 24 lowercase hex digits (TAI64N) as a time, or `None`.
fn parse_tai64n(s: &str) -> Option<SystemTime> {
    let hex = s.strip_prefix('@')?;
    if hex.len() != 24 || !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    let label = u64::from_str_radix(&hex[..16], 16).ok()?;
    let nanos = u32::from_str_radix(&hex[16..], 16).ok()?;
    // 2^62 + seconds since 1970 TAI, which runs 10 s ahead of UTC there.
    let secs = label.checked_sub((1u64 << 62) + 10)?;
    (nanos < 1_000_000_000).then(|| UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Panics unless `t` lies in `[from - 1 s, to + 1 s]`.
fn assert_between(t: SystemTime, from: SystemTime, to: SystemTime, line: &str) {
    let slack = Duration::from_secs(1);
    assert!(t + slack >= from && t <= to + slack, "stamp of {line:?} is not the time it was written");
}

/// Stdout and stderr both land in the default `console/NAME.log`, after what
/// the file already held, and the unfinished last line of a process that
/// exits is still written (with a newline).
#[test]
fn both_streams_are_appended_to_the_default_transcript() {
    let mut f = Fixture::new(
        r#"
[service.oneshot]
command = "printf 'a\\nb'; echo err >&2; exit 0"
shell = true
exit_codes = [0]
"#,
    );
    let path = f.path("rt/console/oneshot.log");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "old line\n").unwrap();
    f.start();
    let s = f.wait_state("oneshot", "exited", T);
    assert_eq!(s["transcript"], path.display().to_string());
    let text = wait_for("b to be written", T, || Some(read(&path)).filter(|t| t.lines().any(|l| l == "b")));
    assert!(text.starts_with("old line\n"), "appended, not truncated: {text:?}");
    assert!(text.ends_with('\n'), "{text:?}");
    let mut lines: Vec<&str> = text.lines().collect();
    let (a, b) = (lines.iter().position(|l| *l == "a"), lines.iter().position(|l| *l == "b"));
    assert!(a.is_some() && a < b, "stdout in order: {text:?}");
    lines.sort_unstable();
    assert_eq!(lines, ["a", "b", "err", "old line"], "each line once, whole: {text:?}");
    let s = f.service("oneshot");
    assert_eq!(s["dropped_bytes"], 0);
    assert!(s["transcript_error"].is_null());
}

/// `tag` prefixes `out ` or `err `; `timestamps` prefixes an RFC 3339 UTC time
/// with microseconds or a TAI64N label, of the moment the line was written;
/// with both, the time comes first.
#[test]
fn tags_and_timestamps_prefix_each_line() {
    let one = |name: &str, transcript: &str| {
        format!(
            "[service.{name}]\ncommand = \"echo o1; echo e1 >&2; exit 0\"\nshell = true\nexit_codes = [0]\n\
             transcript = {{ {transcript} }}\n"
        )
    };
    let config = [
        one("tagged", "tag = true"),
        one("rfc", "timestamps = \"rfc3339\""),
        one("tai", "timestamps = \"tai64n\""),
        one("both", "timestamps = \"rfc3339\", tag = true"),
        one("plain", "timestamps = \"none\", tag = false"),
    ]
    .concat();
    let mut f = Fixture::new(&config);
    let before = SystemTime::now();
    f.start();
    let text = |name: &str| {
        let path = f.path(&format!("rt/console/{name}.log"));
        f.wait_state(name, "exited", T);
        wait_for(&format!("two lines in {name}.log"), T, || Some(read(&path)).filter(|t| t.lines().count() >= 2))
    };
    let sorted = |t: String| {
        let mut v: Vec<String> = t.lines().map(str::to_owned).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(sorted(text("tagged")), ["err e1", "out o1"]);
    assert_eq!(sorted(text("plain")), ["e1", "o1"]);
    let (rfc, tai, both) = (text("rfc"), text("tai"), text("both"));
    let after = SystemTime::now();

    let mut bodies = Vec::new();
    for line in rfc.lines() {
        let (stamp, body) = line.split_once(' ').unwrap_or_else(|| panic!("no stamp: {line:?}"));
        let t = parse_rfc3339(stamp).unwrap_or_else(|| panic!("not YYYY-MM-DDTHH:MM:SS.ffffffZ: {line:?}"));
        assert_between(t, before, after, line);
        bodies.push(body);
    }
    bodies.sort_unstable();
    assert_eq!(bodies, ["e1", "o1"], "{rfc:?}");

    let mut bodies = Vec::new();
    for line in tai.lines() {
        let (stamp, body) = line.split_once(' ').unwrap_or_else(|| panic!("no stamp: {line:?}"));
        let t = parse_tai64n(stamp).unwrap_or_else(|| panic!("not @ and 24 lowercase hex digits: {line:?}"));
        assert_between(t, before, after, line);
        bodies.push(body);
    }
    bodies.sort_unstable();
    assert_eq!(bodies, ["e1", "o1"], "{tai:?}");

    let mut bodies = Vec::new();
    for line in both.lines() {
        let (stamp, body) = line.split_once(' ').unwrap_or_else(|| panic!("no stamp: {line:?}"));
        let t = parse_rfc3339(stamp).unwrap_or_else(|| panic!("the time comes first: {line:?}"));
        assert_between(t, before, after, line);
        bodies.push(body);
    }
    bodies.sort_unstable();
    assert_eq!(bodies, ["err e1", "out o1"], "{both:?}");
}

/// What a rotated transcript must look like once `sv-test-helper lines COUNT
/// LEN` has written everything.
struct Rotated {
    base: PathBuf,
    count: usize,
    len: usize,
    max: u64,
    /// Checks and strips the per-line prefix (tag, timestamp).
    strip: fn(&str) -> &str,
}

impl Rotated {
    /// Waits until the last line (`COUNT-1`) is in the current file: after
    /// it nothing is written, so nothing rotates any more.
    fn wait_done(&self) {
        let last = format!("{:08} ", self.count - 1);
        wait_for(&format!("line {} in {}", self.count - 1, self.base.display()), T, || {
            let text = read(&self.base);
            let line = whole_lines(&text).last().map(|l| (self.strip)(l).to_owned())?;
            line.starts_with(&last).then_some(())
        });
    }

    /// Reads `PATH.K`, ..., `PATH.1`, `PATH` (oldest first), checks every
    /// file's size and every line, and returns the sequence numbers in the
    /// order they were found, and how many rotated files there are.
    fn read_all(&self) -> (Vec<usize>, usize) {
        let mut files = Vec::new();
        while numbered(&self.base, files.len() + 1).exists() {
            files.push(numbered(&self.base, files.len() + 1));
        }
        let rotated = files.len();
        files.reverse();
        files.push(self.base.clone());
        let body = format!("{}\n", "x".repeat(self.len - 10));
        let mut seq = Vec::new();
        let mut line_len = None;
        for (i, file) in files.iter().enumerate() {
            let text = read(file);
            let size = text.len() as u64;
            assert!(size <= self.max, "{} is {size} bytes, over {}", file.display(), self.max);
            assert!(text.ends_with('\n'), "{} ends inside a line", file.display());
            for line in text.split_inclusive('\n') {
                assert_eq!(
                    *line_len.get_or_insert(line.len()),
                    line.len(),
                    "a split line in {}: {line:?}",
                    file.display()
                );
                let rest = (self.strip)(line);
                let (num, tail) = rest.split_at(9);
                assert!(num.ends_with(' ') && tail == body, "a damaged line in {}: {line:?}", file.display());
                seq.push(num.trim_end().parse().unwrap_or_else(|_| panic!("{line:?}")));
            }
            if i + 1 < files.len() {
                // Rotated only when the next line would not have fitted.
                let next = line_len.unwrap() as u64;
                assert!(size + next > self.max, "{} rotated early at {size} bytes", file.display());
            }
        }
        (seq, rotated)
    }
}

/// A line as it is.
fn plain(l: &str) -> &str {
    l
}

/// A line after its RFC 3339 stamp and `err ` tag, which must be there.
fn stamped_err(l: &str) -> &str {
    let (stamp, rest) = l.split_at(28);
    assert!(parse_rfc3339(&stamp[..27]).is_some() && stamp.ends_with(' '), "bad stamp: {l:?}");
    rest.strip_prefix("err ").unwrap_or_else(|| panic!("bad tag: {l:?}"))
}

/// Rotation under a fast writer (`lines` writes as fast as it can, and reads
/// split its lines anywhere) loses, repeats and splits no line: all of them
/// are there, in order, each file within `max_size` and only rotated when
/// the next line would not fit; with a `keep` that is large enough, exactly
/// the files needed exist. The same with a tag and timestamps on each line.
#[test]
fn rotation_under_a_fast_writer_keeps_every_line_whole() {
    const COUNT: usize = 200_000;
    const LEN: usize = 99;
    const MAX: u64 = 1_000_000;
    let mut f = Fixture::new(&format!(
        r#"
[service.fast]
command = ["HELPER", "lines", "{COUNT}", "{LEN}"]
transcript = {{ max_size = "1MB", keep = 30 }}

[service.stamped]
command = ["HELPER", "lines", "{COUNT}", "{LEN}", "err"]
transcript = {{ max_size = "1MB", keep = 30, tag = true, timestamps = "rfc3339" }}
"#
    ));
    f.start();
    for (name, strip, line_len) in [("fast", plain as fn(&str) -> &str, LEN), ("stamped", stamped_err, LEN + 32)] {
        let r = Rotated { base: f.path(&format!("rt/console/{name}.log")), count: COUNT, len: LEN, max: MAX, strip };
        r.wait_done();
        let (seq, rotated) = r.read_all();
        assert_eq!(seq.len(), COUNT, "{name}: every line once");
        assert!(seq.iter().copied().eq(0..COUNT), "{name}: lines lost, repeated or out of order");
        let per_file = (MAX as usize) / line_len;
        assert_eq!(rotated + 1, COUNT.div_ceil(per_file), "{name}: as many files as needed, no more");
        let s = f.service(name);
        assert_eq!(s["dropped_bytes"], 0, "{name}");
        assert_eq!(s["restarts"], 0, "{name}: the writer never stopped");
    }
}

/// With a small `keep`, the oldest files are removed: `PATH.1` ... `PATH.KEEP`
/// exist and no further one, and they hold the newest lines, in order and
/// without a gap; with `keep = 0` a full file is removed, not renamed.
#[test]
fn rotation_keeps_only_the_newest_files() {
    const COUNT: usize = 3000;
    let mut f = Fixture::new(&format!(
        r#"
[service.three]
command = ["HELPER", "lines", "{COUNT}", "100"]
transcript = {{ max_size = "10KB", keep = 3 }}

[service.none]
command = ["HELPER", "lines", "{COUNT}", "100"]
transcript = {{ max_size = "10KB", keep = 0 }}
"#
    ));
    f.start();
    for (name, keep) in [("three", 3), ("none", 0)] {
        let r = Rotated {
            base: f.path(&format!("rt/console/{name}.log")),
            count: COUNT,
            len: 100,
            max: 10_000,
            strip: plain,
        };
        r.wait_done();
        let (seq, rotated) = r.read_all();
        assert_eq!(rotated, keep, "{name}: PATH.1 to PATH.{keep}, nothing beyond");
        assert!(!numbered(&r.base, keep + 1).exists());
        // 100 lines per file; the newest (keep + 1) files survive.
        let first = COUNT - 100 * (keep + 1);
        assert!(seq.iter().copied().eq(first..COUNT), "{name}: the newest lines, in order: {:?}", &seq[..3]);
    }
}

/// After an outside tool renamed the transcript, output keeps going to the
/// renamed file until `supervisor reopen NAME`, and from then on only to a
/// new file at the configured path: no line lost or written twice.
#[test]
fn reopen_moves_output_to_a_new_file_after_a_rename() {
    let mut f = Fixture::new(TICKER);
    f.start();
    let log = f.path("rt/console/ticker.log");
    let old = f.path("rt/console/ticker.log.old");
    wait_for("the first ticks", T, || (ticks(&read(&log)).len() >= 2).then_some(()));
    fs::rename(&log, &old).unwrap();
    let n = ticks(&read(&old)).len();
    wait_for("the renamed file to grow", T, || (ticks(&read(&old)).len() >= n + 2).then_some(()));
    assert!(!log.exists(), "nothing made a new file before reopen");

    let (code, _, err) = f.cli_code(&["reopen", "ticker"]);
    assert_eq!(code, 0, "{err}");
    // Once reopen has answered, the renamed file is no longer written.
    let frozen = read(&old);
    wait_for("3 ticks in the new file", T, || (ticks(&read(&log)).len() >= 3).then_some(()));
    assert_eq!(read(&old), frozen, "the renamed file grew after reopen");
    let mut all = ticks(&frozen);
    all.extend(ticks(&read(&log)));
    assert_eq!(all[0], 1);
    assert_consecutive(&all, "renamed + new file");
    assert_eq!(f.service("ticker")["transcript"], log.display().to_string());
}

/// SIGUSR2 to the supervisor reopens the transcripts (and the event log) as
/// `reopen` does, and does not end the supervisor.
#[test]
fn sigusr2_reopens_transcripts_and_the_event_log() {
    let mut f = Fixture::new(TICKER);
    f.start();
    let log = f.path("rt/console/ticker.log");
    let old = f.path("rt/console/ticker.log.old");
    let events = f.path("rt/log/supervisor.log");
    wait_for("the first ticks", T, || (ticks(&read(&log)).len() >= 2).then_some(()));
    fs::rename(&log, &old).unwrap();
    fs::rename(&events, f.path("rt/log/supervisor.log.old")).unwrap();
    let pid = i64::from(f.pid("ticker"));
    kill(supervisor_pid(&f), Signal::SIGUSR2).unwrap();
    wait_for("a new transcript", T, || log.exists().then_some(()));
    // The new file exists: the renamed one will not be written again.
    let frozen = read(&old);
    wait_for("3 ticks in the new file", T, || (ticks(&read(&log)).len() >= 3).then_some(()));
    assert_eq!(read(&old), frozen, "the renamed file grew after SIGUSR2");
    let mut all = ticks(&frozen);
    all.extend(ticks(&read(&log)));
    assert_consecutive(&all, "renamed + new file");
    wait_for("a new event log", T, || read(&events).contains("transcript reopened").then_some(()));
    assert!(f.supervisor.as_mut().unwrap().try_wait().unwrap().is_none(), "the supervisor still runs");
    assert_eq!(i64::from(f.pid("ticker")), pid);
}

/// `reopen` also reopens the event log, as `docs/cli.md` and its `--help`
/// say, even when services are named.
#[test]
fn reopen_command_also_reopens_the_event_log() {
    let mut f = Fixture::new(TICKER);
    f.start();
    let events = f.path("rt/log/supervisor.log");
    wait_for("the event log", T, || read(&events).contains("ticker: running").then_some(()));
    fs::rename(&events, f.path("rt/log/supervisor.log.old")).unwrap();
    let (code, _, err) = f.cli_code(&["reopen", "ticker"]);
    assert_eq!(code, 0, "{err}");
    // reopen logs "ticker: transcript reopened" (info) as it does it.
    wait_for("a new event log", Duration::from_secs(5), || read(&events).contains("transcript reopened").then_some(()));
}

/// `reopen` with no name reopens every transcript; an unknown name is a
/// usage error (2); naming a service whose output is not captured fails (1).
#[test]
fn reopen_arguments() {
    let mut f = Fixture::new(&format!(
        "{TICKER}\n[service.quiet]\ncommand = [\"HELPER\", \"sleep\"]\nstdout = \"null\"\nstderr = \"null\"\n"
    ));
    f.start();
    let log = f.path("rt/console/ticker.log");
    wait_for("the first tick", T, || (!ticks(&read(&log)).is_empty()).then_some(()));
    fs::rename(&log, f.path("rt/console/ticker.log.old")).unwrap();
    let (code, _, err) = f.cli_code(&["reopen"]);
    assert_eq!(code, 0, "{err}");
    wait_for("a tick in a new file", T, || (!ticks(&read(&log)).is_empty()).then_some(()));
    assert!(f.service("quiet")["transcript"].is_null());
    assert!(!f.path("rt/console/quiet.log").exists(), "no transcript for uncaptured output");

    let (code, _, err) = f.cli_code(&["reopen", "nosuch"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = f.cli_code(&["reopen", "quiet"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no transcript"), "{err}");
}

/// A transcript that cannot be written (`/dev/full`) never stops the
/// service: the same process keeps running and writing (far more than a
/// pipe holds), every byte it wrote is counted as dropped, and the status
/// says why.
#[test]
fn an_unwritable_transcript_never_stops_the_service() {
    const COUNT: u64 = 30_000;
    const LEN: u64 = 100;
    let mut f = Fixture::new(&format!(
        r#"
[service.full]
command = ["HELPER", "lines", "{COUNT}", "{LEN}"]
transcript.path = "/dev/full"
min_uptime = "100ms"
"#
    ));
    f.start();
    let s = f.wait_state("full", "running", T);
    let pid = s["pid"].as_i64().unwrap();
    assert_eq!(s["transcript"], "/dev/full");
    let s = wait_for("drops to be counted", T, || {
        let s = f.service("full");
        (s["dropped_bytes"].as_u64().unwrap() > 0).then_some(s)
    });
    let err = s["transcript_error"].as_str().unwrap_or_else(|| panic!("no transcript_error: {s}"));
    assert!(err.contains("No space left"), "{err}");
    // 3 MB: the writer only gets through it if the supervisor keeps reading.
    let s = wait_for("every byte to be dropped", T, || {
        let s = f.service("full");
        (s["dropped_bytes"].as_u64().unwrap() >= COUNT * LEN).then_some(s)
    });
    assert_eq!(s["dropped_bytes"].as_u64().unwrap(), COUNT * LEN, "exactly what was written");
    assert_eq!(s["state"], "running");
    assert_eq!(s["pid"].as_i64().unwrap(), pid, "the same process");
    assert_eq!(s["restarts"], 0);
    assert!(f.log().contains("output is dropped"), "the error is logged: {}", f.log());
}

/// A transcript whose directory is removed: after `reopen` the open fails,
/// output is dropped and counted and the error shown; once the directory is
/// back, writing resumes within about a second (the open is retried as data
/// arrives) and the error clears. Exactly the lines in between are dropped.
#[test]
fn a_transcript_recovers_when_its_directory_comes_back() {
    let mut f = Fixture::new(&format!("{TICKER}transcript.path = \"DIR/logs/ticker.log\"\n"));
    let logs = f.path("logs");
    let log = logs.join("ticker.log");
    fs::create_dir(&logs).unwrap();
    f.start();
    wait_for("the first ticks", T, || (ticks(&read(&log)).len() >= 2).then_some(()));
    let pid = i64::from(f.pid("ticker"));
    // Keep the old file open to see what was written to it to the end.
    let mut before = fs::File::open(&log).unwrap();
    fs::remove_dir_all(&logs).unwrap();
    let (code, _, err) = f.cli_code(&["reopen", "ticker"]);
    assert_eq!(code, 0, "{err}");
    let mut text = String::new();
    before.read_to_string(&mut text).unwrap();
    let last_before = *ticks(&text).last().unwrap();

    let s = wait_for("drops to be counted", T, || {
        let s = f.service("ticker");
        (s["dropped_bytes"].as_u64().unwrap() > 0).then_some(s)
    });
    let err = s["transcript_error"].as_str().unwrap_or_else(|| panic!("no transcript_error: {s}"));
    assert!(err.contains("No such file or directory"), "{err}");
    assert_eq!(s["pid"].as_i64().unwrap(), pid);

    fs::create_dir(&logs).unwrap();
    let s = wait_for("writing to resume", Duration::from_secs(4), || {
        let s = f.service("ticker");
        (s["transcript_error"].is_null() && !ticks(&read(&log)).is_empty()).then_some(s)
    });
    let first_after = ticks(&read(&log))[0];
    assert!(first_after > last_before + 1, "some ticks fell in the gap");
    let lost: u64 = (last_before + 1..first_after).map(|n| format!("tick {n}\n").len() as u64).sum();
    assert_eq!(s["dropped_bytes"].as_u64().unwrap(), lost, "dropped counts exactly the lines that were lost");
    wait_for("more ticks", T, || (ticks(&read(&log)).len() >= 4).then_some(()));
    let after = ticks(&read(&log));
    assert_consecutive(&after, "after recovery");
    let s = f.service("ticker");
    assert_eq!(s["dropped_bytes"].as_u64().unwrap(), lost, "nothing dropped once it works again");
    assert!(s["transcript_error"].is_null());
    assert_eq!(s["pid"].as_i64().unwrap(), pid, "the service never stopped");
}

/// Starts the supervisor as `Fixture::start` does, with a soft file size
/// limit (`RLIMIT_FSIZE`) of `limit` bytes, which its services inherit.
fn start_with_file_size_limit(f: &mut Fixture, limit: u64) {
    let log = fs::File::create(f.path("supervisor.stderr")).unwrap();
    let mut cmd = Command::new(supervisor_bin());
    cmd.arg("-c").arg(&f.config).arg("run").stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
    // SAFETY: getrlimit and setrlimit are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_FSIZE, &raw mut r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            r.rlim_cur = limit;
            if libc::setrlimit(libc::RLIMIT_FSIZE, &raw const r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    f.supervisor = Some(cmd.spawn().expect("spawn supervisor"));
    let socket = f.socket();
    wait_for("the supervisor to answer", T, || std::os::unix::net::UnixStream::connect(&socket).ok());
}

/// Lifts the supervisor's soft file size limit to its hard limit.
fn lift_file_size_limit(f: &Fixture) {
    let pid = supervisor_pid(f).as_raw();
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit only reads and writes the structures given.
    unsafe {
        assert_eq!(libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &raw mut r), 0);
        r.rlim_cur = r.rlim_max;
        assert_eq!(libc::prlimit(pid, libc::RLIMIT_FSIZE, &raw const r, std::ptr::null_mut()), 0);
    }
}

/// The file size limit for [`file_size_limit_fixture`], and the size of
/// the transcript it starts with: 3 bytes below the limit.
const FSIZE: u64 = 1_000_000;

/// A ticker whose transcript is 3 bytes short of the supervisor's file size
/// limit, so that the first tick is written in part (and cut back), and the
/// ticks after it not at all. Returns the transcript's path once writing fails.
fn file_size_limit_fixture() -> (Fixture, PathBuf) {
    let mut f = Fixture::new(TICKER);
    let log = f.path("rt/console/ticker.log");
    fs::create_dir_all(log.parent().unwrap()).unwrap();
    fs::write(&log, format!("{}\n", "o".repeat(FSIZE as usize - 4))).unwrap();
    start_with_file_size_limit(&mut f, FSIZE);
    let s = wait_for("writing to fail", T, || {
        let s = f.service("ticker");
        (s["dropped_bytes"].as_u64().unwrap() > 0).then_some(s)
    });
    let err = s["transcript_error"].as_str().unwrap_or_else(|| panic!("no transcript_error: {s}"));
    assert!(err.contains("File too large"), "{err}");
    (f, log)
}

/// A transcript at the file size limit never stops the service or the
/// supervisor (SIGXFSZ does not kill it): output is dropped and counted,
/// and once the limit is lifted, writing resumes and the error clears.
#[test]
fn a_transcript_at_the_file_size_limit_drops_then_resumes() {
    let (mut f, log) = file_size_limit_fixture();
    let pid = i64::from(f.pid("ticker"));
    let dropped = f.service("ticker")["dropped_bytes"].as_u64().unwrap();
    wait_for("more drops", T, || (f.service("ticker")["dropped_bytes"].as_u64().unwrap() > dropped).then_some(()));
    assert_eq!(
        fs::metadata(&log).unwrap().len(),
        FSIZE - 3,
        "the line that hit the limit was cut back: only whole lines stay"
    );
    assert!(f.supervisor.as_mut().unwrap().try_wait().unwrap().is_none(), "the supervisor survives SIGXFSZ");

    lift_file_size_limit(&f);
    let s = wait_for("writing to resume", T, || {
        let s = f.service("ticker");
        (s["transcript_error"].is_null() && fs::metadata(&log).unwrap().len() > FSIZE + 20).then_some(s)
    });
    assert_eq!(s["pid"].as_i64().unwrap(), pid, "the service never stopped");
    let dropped = s["dropped_bytes"].as_u64().unwrap();
    wait_for("more ticks", T, || (fs::metadata(&log).unwrap().len() > FSIZE + 60).then_some(()));
    assert_eq!(f.service("ticker")["dropped_bytes"].as_u64().unwrap(), dropped, "nothing dropped any more");
    let text = read(&log);
    let last = whole_lines(&text).last().copied().unwrap_or_default();
    assert!(last.starts_with("tick "), "new ticks are appended: {last:?}");
}

/// A line cut short by a failed write (the file size limit, a full disk)
/// does not leave a fragment that the next line is glued to: the
/// transcript only ever holds whole lines.
#[test]
fn a_failed_write_leaves_no_fragment_of_a_line() {
    let (f, log) = file_size_limit_fixture();
    lift_file_size_limit(&f);
    wait_for("writing to resume", T, || {
        (f.service("ticker")["transcript_error"].is_null() && fs::metadata(&log).unwrap().len() > FSIZE + 40)
            .then_some(())
    });
    let text = read(&log);
    let (old, new) = text.split_at(FSIZE as usize - 3);
    assert!(old.ends_with("o\n"));
    for line in whole_lines(new) {
        assert!(
            line.strip_prefix("tick ").is_some_and(|n| n.parse::<u64>().is_ok()),
            "a damaged line after the failed write: {line:?}"
        );
    }
}

/// `logtail NAME -n N` prints exactly the last N lines (10 by default, all
/// when there are fewer); an unknown service, or one whose output is not
/// captured, is a usage error (2).
#[test]
fn logtail_prints_the_last_lines() {
    let mut f = Fixture::new(
        r#"
[service.fifty]
command = ["HELPER", "lines", "50", "20"]

[service.quiet]
command = ["HELPER", "sleep"]
stdout = "null"
stderr = "null"
"#,
    );
    f.start();
    let log = f.path("rt/console/fifty.log");
    wait_for("50 lines", T, || (read(&log).lines().count() == 50).then_some(()));
    let line = |i: usize| format!("{i:08} xxxxxxxxxx\n");
    let range = |r: std::ops::Range<usize>| r.map(line).collect::<String>();

    let (code, out, err) = f.cli_code(&["logtail", "fifty", "-n", "3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, range(47..50));
    let (code, out, _) = f.cli_code(&["logtail", "fifty"]);
    assert_eq!(code, 0);
    assert_eq!(out, range(40..50));
    let (code, out, _) = f.cli_code(&["logtail", "fifty", "-n", "100"]);
    assert_eq!(code, 0);
    assert_eq!(out, range(0..50));

    let (code, out, err) = f.cli_code(&["logtail", "nosuch"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("nosuch"), "{err}");
    let (code, _, err) = f.cli_code(&["logtail", "quiet"]);
    assert_eq!(code, 2, "{err}");
}

/// A `logtail -f` running in the background; its lines arrive on a channel.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn spawn(f: &Fixture, args: &[&str]) -> Follower {
        let mut child = Command::new(supervisor_bin())
            .arg("-c")
            .arg(&f.config)
            .arg("logtail")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn logtail");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }

    /// The next line, or a panic after `limit`.
    fn next(&self, limit: Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(l) => l,
            Err(e) => panic!("no line from logtail -f within {limit:?}: {e}"),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `logtail -f` prints the last lines, then the lines written after it
/// started, none lost or repeated.
#[test]
fn logtail_follow_prints_new_lines() {
    let mut f = Fixture::new(TICKER);
    f.start();
    let log = f.path("rt/console/ticker.log");
    wait_for("the first ticks", T, || (ticks(&read(&log)).len() >= 2).then_some(()));
    let follower = Follower::spawn(&f, &["ticker", "-n", "1", "-f"]);
    let first: u64 = follower.next(T).strip_prefix("tick ").unwrap().parse().unwrap();
    let at_start = *ticks(&read(&log)).last().unwrap();
    let mut seen = vec![first];
    while *seen.last().unwrap() < at_start + 5 {
        let l = follower.next(Duration::from_secs(5));
        seen.push(l.strip_prefix("tick ").unwrap_or_else(|| panic!("{l:?}")).parse().unwrap());
    }
    assert_consecutive(&seen, "logtail -f");
    drop(follower);
}

/// `logtail -f` follows the transcript across rotations: it goes on with the
/// new file, with no line lost or repeated.
#[test]
fn logtail_follow_goes_on_across_rotations() {
    let mut f = Fixture::new(&format!("{TICKER}transcript = {{ max_size = \"100B\", keep = 2 }}\n"));
    f.start();
    let log = f.path("rt/console/ticker.log");
    wait_for("the first tick", T, || (!ticks(&read(&log)).is_empty()).then_some(()));
    let follower = Follower::spawn(&f, &["ticker", "-n", "1", "-f"]);
    let first: u64 = follower.next(T).strip_prefix("tick ").unwrap().parse().unwrap();
    let inode = fs::metadata(&log).unwrap().ino();
    let mut seen = vec![first];
    // About 10 ticks fit in 100 bytes: 30 more lines span at least 2 rotations.
    let deadline = Instant::now() + T;
    while seen.len() < 30 {
        assert!(Instant::now() < deadline, "too slow: {seen:?}");
        let l = follower.next(Duration::from_secs(5));
        seen.push(l.strip_prefix("tick ").unwrap_or_else(|| panic!("{l:?}")).parse().unwrap());
    }
    assert_ne!(fs::metadata(&log).unwrap().ino(), inode, "the transcript rotated meanwhile");
    assert_consecutive(&seen, "logtail -f across rotations");
    drop(follower);
}
