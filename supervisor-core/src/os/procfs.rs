//! Reading the process table from `/proc`: parents, groups, sessions and
//! start times, to find every descendant of a service.

use std::collections::HashMap;
use std::fs;

/// What `/proc/PID/stat` says about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgid: i32,
    /// Session id.
    pub sid: i32,
    /// Start time in clock ticks since boot: with the pid, it names one
    /// process for good (a reused pid has a later start time).
    pub start_time: u64,
    /// A zombie: dead, waiting to be reaped.
    pub zombie: bool,
    /// A kernel thread (`PF_KTHREAD`): no signal reaches it.
    pub kernel: bool,
}

/// The `PF_KTHREAD` bit of the flags in `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Parses the text of `/proc/PID/stat`.
pub fn parse_stat(text: &str) -> Option<ProcInfo> {
    let pid = text.split(' ').next()?.parse().ok()?;
    // The command name is in parentheses and may hold anything: parse from
    // the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest[0] is field 3 (state); start time is field 22.
    Some(ProcInfo {
        pid,
        zombie: fields.first()? == &"Z",
        kernel: fields.get(6)?.parse::<u64>().ok()? & PF_KTHREAD != 0,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        sid: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), read once.
pub fn boot_id() -> Option<&'static str> {
    static BOOT_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_owned()))
        .as_deref()
}

/// Reads one process's stat line; `None` when it is gone.
pub fn read_stat(pid: i32) -> Option<ProcInfo> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `/proc/PID/environ` holds `KEY=VALUE` exactly.
pub fn environ_has(pid: i32, key: &str, value: &str) -> bool {
    let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("{key}={value}");
    env.split(|b| *b == 0).any(|kv| kv == want.as_bytes())
}

/// The value of `key` in the environment `pid` started with (`None` when
/// it has none, or the process is gone or not ours to read).
pub fn environ_value(pid: i32, key: &str) -> Option<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The direct children of `pid` (all its threads'), from
/// `/proc/PID/task/*/children`. `None` when the kernel lacks that file.
pub fn children(pid: i32) -> Option<Vec<i32>> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    let mut any = false;
    for t in tasks.flatten() {
        let Ok(text) = fs::read_to_string(t.path().join("children")) else {
            continue;
        };
        any = true;
        out.extend(text.split_ascii_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    any.then_some(out)
}

/// The command line of `pid`, its arguments joined by spaces (`None` for
/// a kernel thread, a zombie or a process that is gone).
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let trimmed = raw.strip_suffix(b"\0").unwrap_or(&raw);
    let text: Vec<u8> = trimmed.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
    Some(String::from_utf8_lossy(&text).into_owned())
}

/// The processes whose command line matches `pattern`, except this
/// process, its ancestors (the shell, service manager or test harness
/// that started it, and PID 1) and the ones in `except`.
pub fn matching(pattern: &regex_lite::Regex, except: &[i32]) -> Vec<i32> {
    let mine = ancestors();
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|&pid| pid != 1 && !mine.contains(&pid) && !except.contains(&pid))
        .filter(|&pid| cmdline(pid).is_some_and(|c| pattern.is_match(&c)))
        .filter(|&pid| read_stat(pid).is_some_and(|i| !i.zombie))
        .collect()
}

/// This process and its ancestors, up to PID 1.
fn ancestors() -> Vec<i32> {
    let mut chain = vec![std::process::id() as i32];
    while let Some(info) = chain.last().and_then(|&pid| read_stat(pid)) {
        if info.ppid <= 1 || chain.contains(&info.ppid) || chain.len() > 4096 {
            break;
        }
        chain.push(info.ppid);
    }
    chain
}

/// A snapshot of the whole process table.
#[derive(Debug, Default)]
pub struct ProcTable {
    procs: HashMap<i32, ProcInfo>,
    children: HashMap<i32, Vec<i32>>,
    groups: HashMap<i32, Vec<i32>>,
}

impl ProcTable {
    /// Reads every process in `/proc`.
    pub fn read() -> ProcTable {
        let mut procs = HashMap::new();
        if let Ok(dir) = fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if let Some(info) = read_stat(pid) {
                    procs.insert(pid, info);
                }
            }
        }
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        let mut groups: HashMap<i32, Vec<i32>> = HashMap::new();
        for p in procs.values() {
            children.entry(p.ppid).or_default().push(p.pid);
            groups.entry(p.pgid).or_default().push(p.pid);
        }
        ProcTable { procs, children, groups }
    }

    /// Every process in the snapshot.
    pub fn all(&self) -> impl Iterator<Item = &ProcInfo> {
        self.procs.values()
    }

    /// One process, if it was alive at the snapshot.
    pub fn get(&self, pid: i32) -> Option<&ProcInfo> {
        self.procs.get(&pid)
    }

    /// Every live process under `pid` (not itself), for a subreaper's
    /// last sweep.
    pub fn descendants(&self, pid: i32) -> Vec<i32> {
        let mut out = Vec::new();
        let mut stack = vec![pid];
        while let Some(p) = stack.pop() {
            for &kid in self.children.get(&p).into_iter().flatten() {
                if kid != pid && !out.contains(&kid) {
                    out.push(kid);
                    stack.push(kid);
                }
            }
        }
        out.retain(|p| self.procs.get(p).is_some_and(|i| !i.zombie));
        out
    }

    /// Every live (non-zombie) process that belongs to a service whose
    /// processes include `roots` and whose process group is `pgid`:
    /// members of the group, and descendants of any of them (which catches
    /// children that called `setsid`).
    pub fn members(&self, pgid: i32, roots: &[i32]) -> Vec<ProcInfo> {
        let mut seen: std::collections::HashSet<i32> = std::collections::HashSet::new();
        let mut order: Vec<i32> = Vec::new();
        let mut stack: Vec<i32> = roots.to_vec();
        // Members of the group too: they may have been re-parented away
        // from the roots.
        stack.extend(self.groups.get(&pgid).into_iter().flatten());
        while let Some(pid) = stack.pop() {
            if !self.procs.contains_key(&pid) || !seen.insert(pid) {
                continue;
            }
            order.push(pid);
            if let Some(kids) = self.children.get(&pid) {
                stack.extend(kids);
            }
        }
        let seen = order;
        seen.iter().filter_map(|p| self.procs.get(p)).filter(|p| !p.zombie).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        let p = parse_stat(line).unwrap();
        assert_eq!((p.pid, p.ppid, p.pgid, p.sid, p.start_time), (4242, 1, 4242, 4242, 987_654));
        assert!(!p.zombie);
        assert!(!p.kernel);
    }

    #[test]
    fn kernel_threads_are_told_apart() {
        let line = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 15 0 0";
        assert!(parse_stat(line).unwrap().kernel);
    }

    #[test]
    fn descendants_are_found_through_the_generations() {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sh").args(["-c", "sleep 30 & wait"]).spawn().unwrap();
        let shell = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (found, grandchildren) = loop {
            let table = ProcTable::read();
            let grandchildren = table.descendants(shell);
            if !grandchildren.is_empty() || std::time::Instant::now() > deadline {
                break (table.descendants(me), grandchildren);
            }
            std::thread::yield_now();
        };
        for p in grandchildren.iter().chain([&shell]) {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        let _ = child.wait();
        assert!(found.contains(&shell), "{found:?}");
        assert!(!grandchildren.is_empty() && grandchildren.iter().all(|g| found.contains(g)), "{found:?}");
        assert!(!found.contains(&me));
    }

    #[test]
    fn reads_ourselves() {
        let me = std::process::id() as i32;
        let p = read_stat(me).unwrap();
        assert_eq!(p.pid, me);
        assert!(ProcTable::read().get(me).is_some());
    }

    #[test]
    fn a_pattern_never_matches_this_process_its_ancestors_or_pid_1() {
        let chain = ancestors();
        assert_eq!(chain[0], std::process::id() as i32);
        assert!(chain.len() >= 2, "the test runner has a parent: {chain:?}");
        let everything = regex_lite::Regex::new(".").unwrap();
        let found = matching(&everything, &[]);
        assert!(chain.iter().all(|p| !found.contains(p)), "{chain:?} in {found:?}");
        assert!(!found.contains(&1));
    }
}
