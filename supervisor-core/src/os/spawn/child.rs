//! The child's side of a spawn, from `clone` to `exec`: it shares the
//! parent's memory and runs with every signal blocked, so everything here
//! is an async-signal-safe system call on data prepared before the clone.

use std::os::fd::{AsRawFd, RawFd};

use super::{Prepared, STEP_UNSHARE};

/// What the child needs, passed through `clone`'s argument pointer.
pub(super) struct ChildArgs<'a> {
    pub(super) prep: &'a Prepared,
    pub(super) argv: &'a [*const libc::c_char],
    pub(super) envp: &'a [*const libc::c_char],
    pub(super) groups: &'a [libc::gid_t],
    pub(super) status_fd: RawFd,
    /// The child shares our descriptor table (`CLONE_FILES`) and first
    /// makes its own of the descriptors below this number.
    pub(super) unshare_below: Option<RawFd>,
}

pub(super) extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the `ChildArgs` on the parent's stack, which
    // lives until the parent resumes, after this child has exec'd or exited.
    unsafe {
        let a = &*(arg as *const ChildArgs<'_>);
        if let Some(below) = a.unshare_below {
            const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;
            if libc::syscall(libc::SYS_close_range, below as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_UNSHARE) != 0
            {
                child_fail(a.status_fd, STEP_UNSHARE);
            }
        }
        child_after_fork(a.prep, a.argv, a.envp, a.groups, a.status_fd)
    }
}

/// Reports a failed step to the parent and exits.
///
/// # Safety
///
/// Only to be called in the forked child.
unsafe fn child_fail(fd: RawFd, step: u32) -> ! {
    // SAFETY: reading errno, write(2) and _exit(2) are async-signal-safe,
    // and `buf` is on this child's own stack.
    unsafe {
        let errno = *libc::__errno_location();
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&step.to_ne_bytes());
        buf[4..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(fd, buf.as_ptr().cast(), buf.len());
        libc::_exit(127)
    }
}

/// The child side: set-up, then exec.
///
/// # Safety
///
/// Must be called only in a child made by `clone(CLONE_VM | CLONE_VFORK)`
/// (or `fork`) with all signals blocked. It makes only async-signal-safe
/// calls: no allocation, no locks, no Rust std I/O, and it writes no memory
/// but its own stack and `errno` (the parent's memory is shared).
unsafe fn child_after_fork(
    prep: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    groups: &[libc::gid_t],
    status_fd: RawFd,
) -> ! {
    // SAFETY: the caller guarantees this runs in the new child, with all
    // signals blocked; every call below is an async-signal-safe system
    // call on pointers into `prep`, `argv`, `envp`, `groups` (alive in the
    // suspended parent) or this stack.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            child_fail(status_fd, 0);
        }
        // Default dispositions and an empty mask: ignored signals (Rust ignores
        // SIGPIPE) and blocked ones would otherwise survive exec.
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut()) != 0 {
            child_fail(status_fd, 6);
        }
        if libc::dup2(prep.stdin, 0) < 0 {
            child_fail(status_fd, 1);
        }
        if let Some(fd) = prep.stdout {
            if libc::dup2(fd, 1) < 0 {
                child_fail(status_fd, 1);
            }
        }
        if let Some(fd) = prep.stderr {
            if libc::dup2(fd, 2) < 0 {
                child_fail(status_fd, 1);
            }
        }
        if let Some(dir) = &prep.dir {
            if libc::chdir(dir.as_ptr()) != 0 {
                child_fail(status_fd, 2);
            }
        }
        if let Some(mask) = prep.umask {
            libc::umask(mask);
        }
        // Limits before the user changes, as `softlimit` runs before
        // `setuidgid` in a run script; lowering a soft limit needs no privilege.
        for (resource, limit) in &prep.rlimits {
            if libc::setrlimit(*resource as _, limit) != 0 {
                child_fail(status_fd, 9);
            }
        }
        if let Some((uid, gid, _)) = prep.ids {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                child_fail(status_fd, 3);
            }
            if libc::setgid(gid) != 0 {
                child_fail(status_fd, 4);
            }
            if libc::setuid(uid) != 0 {
                child_fail(status_fd, 5);
            }
        }
        // Descriptors the host program left inheritable must not leak into the
        // service: mark everything above stderr close-on-exec.
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        if libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
            let errno = *libc::__errno_location();
            if errno != libc::ENOSYS && errno != libc::EINVAL {
                child_fail(status_fd, 8);
            }
        }
        // The lock file's descriptor is the one that must survive exec: the
        // lock lives as long as the program keeps it open. (Our descriptor
        // table is a copy: this does not change the parent's flag.)
        let mut lock = prep.lock.as_ref().map(AsRawFd::as_raw_fd);
        let mut status_fd = status_fd;
        if let Some((fd, at)) = prep.ready {
            // The readiness pipe goes to its number last; what sits there
            // (the status pipe, the lock) moves up first.
            if status_fd == at {
                status_fd = libc::fcntl(status_fd, libc::F_DUPFD_CLOEXEC, at + 1);
                if status_fd < 0 {
                    libc::_exit(127);
                }
            }
            if lock == Some(at) {
                let moved = libc::fcntl(at, libc::F_DUPFD_CLOEXEC, at + 1);
                if moved < 0 {
                    child_fail(status_fd, 12);
                }
                lock = Some(moved);
            }
            let placed = if fd == at { libc::fcntl(at, libc::F_SETFD, 0) } else { libc::dup2(fd, at) };
            if placed < 0 {
                child_fail(status_fd, 12);
            }
        }
        if let Some(fd) = lock {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                child_fail(status_fd, 10);
            }
        }
        libc::execve(prep.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        child_fail(status_fd, 7)
    }
}
