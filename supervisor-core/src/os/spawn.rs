//! Fork and exec of a service: the one place where `unsafe` process code
//! lives.
//!
//! Everything that allocates or may take a lock (user and group look-ups,
//! `PATH` search, C strings, opening output files) happens in the parent
//! before the child is made. The child is made the way `posix_spawn` makes
//! it: `clone(CLONE_VM | CLONE_VFORK)`, on a stack of its own, with every
//! signal blocked. It shares the parent's memory (nothing is copied, so a
//! spawn costs the same with one service or thousands) and the parent waits
//! until it has called `exec` or `_exit`. Between the two the child makes
//! only raw, async-signal-safe system calls and writes nothing but its own
//! stack. If a step fails, it writes which step and its `errno` into a
//! close-on-exec pipe and `_exit`s with 127; a successful `exec` closes the
//! pipe. So when [`spawn`] returns, it knows whether the program runs.

use std::ffi::{CString, OsStr};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::Resource;

use crate::model::{Output, Service};
use crate::os::limits::{take_lock, LockError};

/// The environment variable that marks a service's processes, so that
/// descendants that escape the process group can still be attributed.
pub const SERVICE_ENV: &str = "SUPERVISOR_SERVICE";

/// Why a service could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Preparation in the parent failed (unknown user, missing program,
    /// unopenable output file); retrying will not help.
    #[error("{0}")]
    Setup(String),
    /// `fork` itself failed (no memory, process limit); worth retrying.
    #[error("fork: {}", fork_failure(*.0))]
    Fork(nix::Error),
    /// The service's lock file ([`Service::lock`]) is held by another
    /// process; worth retrying once it lets go.
    #[error("lock {} is held by another process", .0.display())]
    Locked(PathBuf),
    /// The supervisor or the system ran out of descriptors or memory
    /// (`EMFILE`, `ENFILE`, `ENOMEM`, `EAGAIN`); worth retrying once some
    /// are free.
    #[error("{0}")]
    Exhausted(String),
}

/// Why `fork` failed, for people: the kernel's words, the errno's name,
/// and what usually causes it.
fn fork_failure(e: nix::Error) -> String {
    let text = std::io::Error::from(e).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    match e {
        nix::Error::EAGAIN => format!("{text} (EAGAIN): a process limit is reached (RLIMIT_NPROC, pids.max)"),
        nix::Error::ENOMEM => format!("{text} (ENOMEM): out of memory"),
        other => format!("{text} ({other:?})"),
    }
}

impl SpawnError {
    /// Whether a later attempt may succeed without a configuration change.
    pub fn is_transient(&self) -> bool {
        matches!(self, SpawnError::Fork(_) | SpawnError::Locked(_) | SpawnError::Exhausted(_))
    }

    /// An I/O error while preparing a spawn, described by `what`: a lack of
    /// descriptors or memory passes, anything else is the setup's fault.
    fn io(what: impl std::fmt::Display, e: &io::Error) -> SpawnError {
        let text = format!("{what}: {e}");
        match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN) => SpawnError::Exhausted(text),
            _ => SpawnError::Setup(text),
        }
    }
}

/// A new child.
#[derive(Debug)]
pub struct Spawned {
    /// The child's pid (also its process group id).
    pub pid: i32,
    /// Why its `exec` failed, if it did (the child then exits with 127).
    pub exec_error: Option<String>,
    /// Why it could not be started in the cgroup it was given, if it could
    /// not (it was started without).
    pub cgroup_error: Option<io::Error>,
}

/// The steps of the child's set-up, reported on failure.
const STEPS: [&str; 13] = [
    "setpgid",
    "dup2 stdio",
    "chdir",
    "setgroups",
    "setgid",
    "setuid",
    "signal mask",
    "exec",
    "close fds",
    "setrlimit",
    "keep the lock descriptor",
    "unshare descriptors",
    "place the readiness descriptor",
];

/// The step of unsharing the descriptor table (`close_range` with
/// `CLOSE_RANGE_UNSHARE`, Linux 5.9): when it fails, children are made with
/// a copy of every descriptor from then on.
const STEP_UNSHARE: u32 = 11;

/// The kernel could not unshare a descriptor table in part.
static UNSHARE_UNSUPPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the 8 bytes a failed child wrote into a message.
pub fn describe_exec_failure(bytes: &[u8], program: &str) -> String {
    if bytes.len() < 8 {
        return format!("child failed before exec of {program} (short status)");
    }
    let step = u32::from_ne_bytes(bytes[0..4].try_into().unwrap_or_default()) as usize;
    let errno = i32::from_ne_bytes(bytes[4..8].try_into().unwrap_or_default());
    let err = io::Error::from_raw_os_error(errno);
    match STEPS.get(step) {
        Some(&"exec") => format!("exec {program}: {err}"),
        Some(s) => format!("{s} before exec of {program}: {err}"),
        None => format!("child failed before exec of {program}: {err}"),
    }
}

/// Everything the child needs, prepared before `fork`.
struct Prepared {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    dir: Option<CString>,
    umask: Option<libc::mode_t>,
    ids: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    stdin: RawFd,
    _devnull: OwnedFd,
    stdout: Option<RawFd>,
    stderr: Option<RawFd>,
    /// Files opened for stdout and stderr, kept open until the fork.
    _files: Vec<OwnedFd>,
    /// Soft and hard limits to set, worked out against ours (the child
    /// inherits our hard limits).
    rlimits: Vec<(Resource, libc::rlimit)>,
    /// The locked lock file: close-on-exec here, inherited by the child,
    /// closed here after the spawn so that only the child holds the lock.
    lock: Option<OwnedFd>,
    /// The cgroup directory to start the child in.
    cgroup: Option<RawFd>,
    /// The write end of a readiness pipe, and the number the child gets it at.
    ready: Option<(RawFd, RawFd)>,
}

/// The descriptors a child starts from: the write ends of transcript pipes
/// for its stdout and stderr, a named pipe for its stdin, and the
/// `cgroup.procs` of the cgroup it joins.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pipes {
    /// For [`Output::Transcript`] or [`Output::Pipe`] on stdout.
    pub stdout: Option<RawFd>,
    /// For [`Output::Transcript`] or [`Output::Pipe`] on stderr.
    pub stderr: Option<RawFd>,
    /// For [`Input::Pipe`](crate::model::Input::Pipe) on stdin.
    pub stdin: Option<RawFd>,
    /// A service's cgroup directory: the child is made in it
    /// (`clone3(CLONE_INTO_CGROUP)`), so that it and everything it forks is
    /// in that cgroup from the start.
    pub cgroup: Option<RawFd>,
    /// `notify = "fd:N"`: the write end of the readiness pipe, and N, the
    /// descriptor number the program finds it at.
    pub ready: Option<(RawFd, RawFd)>,
}

fn cstring(s: impl AsRef<OsStr>, what: &str) -> Result<CString, SpawnError> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| SpawnError::Setup(format!("{what} contains a NUL byte")))
}

fn open_output(
    out: &Output,
    what: &str,
    pipe: Option<RawFd>,
    files: &mut Vec<OwnedFd>,
) -> Result<Option<RawFd>, SpawnError> {
    let (path, flags) = match out {
        Output::Inherit => return Ok(None),
        Output::Transcript | Output::Pipe(_) => {
            return pipe
                .map(Some)
                .ok_or_else(|| SpawnError::Setup(format!("{what} goes to a pipe that does not exist")))
        }
        Output::Null => (Path::new("/dev/null"), libc::O_CLOEXEC),
        // A link planted where the file goes (a shared directory) must
        // not make the supervisor append to whatever it names.
        Output::File(p) => (p.as_path(), libc::O_CLOEXEC | libc::O_NOFOLLOW),
    };
    let f = OpenOptions::new().append(true).create(true).mode(0o644).custom_flags(flags).open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            SpawnError::Setup(format!("{what} file {} is a symbolic link: refused", path.display()))
        } else {
            SpawnError::io(format_args!("open {what} file {}", path.display()), &e)
        }
    })?;
    let fd = OwnedFd::from(f);
    let raw = fd.as_raw_fd();
    files.push(fd);
    Ok(Some(raw))
}

fn prepare(svc: &Service, pipes: Pipes, env: &[(&str, String)]) -> Result<Prepared, SpawnError> {
    let argv_s = svc.command.to_argv();
    let env = environment(svc, env);
    let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
    let program = argv_s.first().ok_or_else(|| SpawnError::Setup("empty command".into()))?;
    let program_path = find_program(program, path_var, svc.directory.as_deref())
        .ok_or_else(|| SpawnError::Setup(format!("program {program:?} not found in PATH")))?;
    let mut envp = Vec::with_capacity(env.len());
    for (k, v) in &env {
        let mut kv = k.clone();
        kv.push("=");
        kv.push(v);
        envp.push(cstring(&kv, "environment variable")?);
    }
    let devnull = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map_err(|e| SpawnError::io("open /dev/null", &e))?;
    let mut files = Vec::new();
    let stdout = open_output(&svc.stdout, "stdout", pipes.stdout, &mut files)?;
    let stderr = open_output(&svc.stderr, "stderr", pipes.stderr, &mut files)?;
    let rlimits = svc
        .limits
        .resolve()
        .map_err(|e| SpawnError::Setup(e.to_string()))?
        .into_iter()
        .map(|l| (l.resource, libc::rlimit { rlim_cur: l.soft, rlim_max: l.hard }))
        .collect();
    let ids = resolve_ids(svc)?;
    // Last, so that a lock is only taken (and a held one only reported)
    // when everything else is in order.
    let lock = match &svc.lock {
        None => None,
        Some(path) => Some(take_lock(path, false, false).map_err(|e| match e {
            LockError::Held(p) => SpawnError::Locked(p),
            other => SpawnError::Setup(other.to_string()),
        })?),
    };
    Ok(Prepared {
        program: cstring(program_path.as_os_str(), "program path")?,
        argv: argv_s.iter().map(|a| cstring(a, "argument")).collect::<Result<_, _>>()?,
        envp,
        dir: svc.directory.as_ref().map(|d| cstring(d.as_os_str(), "directory")).transpose()?,
        umask: svc.umask.map(|m| m as libc::mode_t),
        ids,
        stdin: pipes.stdin.unwrap_or(devnull.as_raw_fd()),
        _devnull: devnull.into(),
        stdout,
        stderr,
        _files: files,
        rlimits,
        lock,
        cgroup: pipes.cgroup,
        ready: pipes.ready,
    })
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The child's stack: enough for `child_after_fork`, which keeps no big
/// locals and calls only thin system call wrappers.
const CHILD_STACK: usize = 64 * 1024;

/// Starts `svc` in a new process group; its transcript streams get the
/// write ends in `pipes`, its environment the variables in `env` too.
///
/// Returns once the child has called `exec` (or failed to): a failure is
/// in [`Spawned::exec_error`].
///
/// # Errors
///
/// [`SpawnError::Setup`] when the program, user, group, an output file,
/// a limit or the lock file cannot be resolved; [`SpawnError::Locked`]
/// when the lock file is held; [`SpawnError::Fork`] when the child cannot
/// be made.
pub fn spawn(svc: &Service, pipes: Pipes, env: &[(&str, String)]) -> Result<Spawned, SpawnError> {
    match spawn_once(svc, pipes, env)? {
        Some(sp) => Ok(sp),
        // The kernel could not unshare in part: made again with a copy of
        // every descriptor.
        None => spawn_once(svc, pipes, env)?.ok_or_else(|| SpawnError::Setup("cannot make a child".into())),
    }
}

/// As [`spawn`]; `None` when the child could not unshare its descriptor
/// table (before anything else; it was reaped), to be tried again.
fn spawn_once(svc: &Service, pipes: Pipes, env: &[(&str, String)]) -> Result<Option<Spawned>, SpawnError> {
    let mut prep = prepare(svc, pipes, env)?;
    let (status_r, status_w) = pipe_cloexec().map_err(|e| SpawnError::io("pipe", &e))?;
    let (_low, below) = low_copies(&mut prep, status_w.as_raw_fd());

    let mut argv: Vec<*const libc::c_char> = prep.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = prep.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let groups: &[libc::gid_t] = prep.ids.as_ref().map_or(&[], |(_, _, g)| g.as_slice());
    let args = ChildArgs {
        prep: &prep,
        argv: &argv,
        envp: &envp,
        groups,
        status_fd: status_w.as_raw_fd(),
        unshare_below: below,
    };
    let share = if below.is_some() { libc::CLONE_FILES } else { 0 };
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down: pass its (16-byte aligned) top.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;

    // SAFETY: all signals are blocked around clone, so that no handler of
    // ours runs in the child (which shares our memory) before it has reset
    // the dispositions; the old mask is restored right after. The child runs
    // `child_entry` on its own stack, only makes raw async-signal-safe calls
    // on data that outlives it (we are suspended until it execs or exits,
    // CLONE_VFORK), and never returns.
    let arg = &raw const args as *mut libc::c_void;
    let mut cgroup_error = None;
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const all, &raw mut old);
        let mut pid = -1;
        let mut fork_failed = false;
        if let Some(dir) = prep.cgroup {
            // As above; the child runs on `stack`, up to its aligned top.
            match clone3::into_cgroup(dir, stack.as_mut_ptr(), top - stack.as_ptr() as usize, child_entry, arg, share) {
                Ok(p) => pid = p,
                // Out of processes or memory: not the cgroup's fault.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOMEM)) => {
                    *libc::__errno_location() = e.raw_os_error().unwrap_or(libc::EAGAIN);
                    fork_failed = true;
                }
                Err(e) => cgroup_error = Some(e),
            }
        }
        if pid < 0 && !fork_failed {
            pid = libc::clone(
                child_entry,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | share | libc::SIGCHLD,
                arg,
            );
        }
        let err = nix::Error::last();
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const old, std::ptr::null_mut());
        if pid < 0 {
            return Err(SpawnError::Fork(err));
        }
        pid
    };
    drop(stack);
    drop(status_w);
    // The child has exec'd or exited: its end of the pipe is closed, and
    // what it wrote (on failure) is there to read.
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(&status_r, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    if got == 8 && buf[..4] == STEP_UNSHARE.to_ne_bytes() {
        // Before anything else, and it exited: made again with a copy of
        // every descriptor.
        log::debug!(
            "no partial unshare of descriptors here: {}",
            io::Error::from_raw_os_error(i32::from_ne_bytes(buf[4..8].try_into().unwrap_or_default()))
        );
        UNSHARE_UNSUPPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
        crate::os::reap::reap_blocking(&[pid]);
        return Ok(None);
    }
    let program = svc.command.to_argv().first().cloned().unwrap_or_default();
    let exec_error = (got > 0).then(|| describe_exec_failure(&buf[..got], &program));
    Ok(Some(Spawned { pid, exec_error, cgroup_error }))
}

/// Makes the child's descriptors (those it keeps past `exec`, and the
/// status pipe) numbers below [`high_fds`](super::sys::high_fds), copying
/// the ones above to low numbers (the copies are returned, to be closed
/// after the spawn). Returns also the number below which the child may
/// unshare its table (`None`: it must be made with a copy of all: the
/// kernel cannot, or no low number was free).
fn low_copies(prep: &mut Prepared, status_fd: RawFd) -> (Vec<OwnedFd>, Option<RawFd>) {
    let high = super::sys::high_fds();
    let mut copies = Vec::new();
    if UNSHARE_UNSUPPORTED.load(std::sync::atomic::Ordering::Relaxed) {
        return (copies, None);
    }
    let mut ok = status_fd < high && prep.lock.as_ref().is_none_or(|l| l.as_raw_fd() < high);
    let mut lower = |fd: &mut RawFd| {
        if *fd < high {
            return;
        }
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor that is open for the
        // spawn; the copy is ours alone.
        let copy = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) };
        if copy < 0 {
            ok = false;
            return;
        }
        // SAFETY: just returned to us alone.
        copies.push(unsafe { OwnedFd::from_raw_fd(copy) });
        ok &= copy < high;
        *fd = copy;
    };
    lower(&mut prep.stdin);
    for out in [&mut prep.stdout, &mut prep.stderr].into_iter().flatten() {
        lower(out);
    }
    if let Some((fd, _)) = prep.ready.as_mut() {
        lower(fd);
    }
    (copies, ok.then_some(high))
}

/// `clone3(2)` with `CLONE_INTO_CGROUP`: the child is made in a cgroup,
/// instead of moved there (a move waits for an RCU grace period, several
/// milliseconds on an idle machine, on every start).
mod child;
mod clone3;
mod resolve;

use child::{child_entry, ChildArgs};
pub(crate) use resolve::check_ids;
use resolve::{environment, resolve_ids};
pub use resolve::{find_program, is_executable};

#[cfg(test)]
mod tests;
