//! Reaping: the one place that calls `waitpid`.
//!
//! A library must not reap its host program's children, so by default only
//! the pids the engine spawned or adopted are waited for, one by one, when
//! their pidfds say they ended. A program that owns its whole process (the
//! `supervisor` command, a PID 1) opts in to [`ReapScope::WholeProcess`],
//! where `waitpid(-1)` also collects orphans re-parented to a child
//! subreaper.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::model::ExitStatus;

/// Which children the engine may reap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReapScope {
    /// Only pids the engine knows (the default, safe for libraries).
    #[default]
    OwnPids,
    /// Any child of the process: set by programs that own the process, such
    /// as a subreaper or PID 1.
    WholeProcess,
}

/// Collects every child that has ended, without blocking (`waitpid(-1)`).
///
/// The kernel looks at every child for each call: with thousands of
/// services, this is for children the engine has no pidfd of (orphans
/// re-parented to a subreaper), not for every exit.
pub fn reap_any() -> Vec<(i32, ExitStatus)> {
    let mut out = Vec::new();
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
            Ok(ws) => push(&mut out, ws),
        }
    }
    out
}

/// Reaps each of `pids` that has ended, without blocking; pids that are
/// not children of ours are skipped. A wait for one pid costs the kernel
/// a look at that child only.
pub fn reap_pids(pids: impl Iterator<Item = i32>) -> Vec<(i32, ExitStatus)> {
    let mut out = Vec::new();
    for pid in pids {
        loop {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Err(Errno::EINTR) => continue,
                Ok(ws) => push(&mut out, ws),
                Err(_) => {}
            }
            break;
        }
    }
    out
}

/// Waits for each of `pids` to end (a child that is known to exit at once,
/// such as the middle process of a double fork).
pub fn reap_blocking(pids: &[i32]) {
    for &pid in pids {
        while let Err(Errno::EINTR) = waitpid(Pid::from_raw(pid), None) {}
    }
}

/// Waits for each of `pids` to end (after they were sent `SIGKILL`), but
/// not past `limit`: a process stuck in the kernel (a dead NFS mount)
/// cannot hold its supervisor's caller. Returns the pids still not reaped.
pub fn reap_within(pids: &[i32], limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    let mut left: Vec<i32> = pids.to_vec();
    loop {
        left.retain(|&pid| loop {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::StillAlive) => break true,
                // Reaped, or not ours to wait for (any more).
                _ => break false,
            }
        });
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn push(out: &mut Vec<(i32, ExitStatus)>, ws: WaitStatus) {
    if let (Some(pid), Some(st)) = (ws.pid(), ExitStatus::from_wait(ws)) {
        out.push((pid.as_raw(), st));
    }
}
