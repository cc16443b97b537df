//! Resource limits and lock files, as daemontools' `softlimit` and
//! `setlock` set them up: for services ([`Service::limits`] and
//! [`Service::lock`]) and for the `supervisor exec` command.
//!
//! [`Limits`] are soft limits. As `softlimit` does, each one is set to the
//! value asked for, but never above the hard limit, which is left as it
//! is: asking for more than the hard limit gets the hard limit, and
//! [`UNLIMITED`] means "as high as the hard limit allows" (`softlimit`'s
//! `=`).
//!
//! A lock file ([`take_lock`]) is locked with `flock(LOCK_EX)` on a
//! descriptor that the program inherits, so that the lock lasts exactly as
//! long as the program (and whichever of its descendants keep the
//! descriptor) runs, as with `setlock`.
//!
//! [`Service::limits`]: crate::Service::limits
//! [`Service::lock`]: crate::Service::lock

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::model::Limits;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The resources that a memory limit sets, as `softlimit -m` does: the
/// data segment, the stack, locked memory and the address space.
pub const MEMORY_RESOURCES: [Resource; 4] =
    [Resource::RLIMIT_DATA, Resource::RLIMIT_STACK, Resource::RLIMIT_MEMLOCK, Resource::RLIMIT_AS];

/// One limit to set: the new soft limit and the hard limit it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rlimit {
    /// Which resource.
    pub resource: Resource,
    /// The soft limit, at most `hard`.
    pub soft: u64,
    /// The hard limit, unchanged.
    pub hard: u64,
}

/// Why limits could not be read or set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// `getrlimit` failed.
    #[error("getrlimit {resource}: {}", nix::Error::from_raw(*.errno).desc())]
    Get {
        /// The resource, as C names it: `RLIMIT_NOFILE`.
        resource: &'static str,
        /// The `errno`.
        errno: i32,
    },
    /// `setrlimit` failed.
    #[error("setrlimit {resource}: {}", nix::Error::from_raw(*.errno).desc())]
    Set {
        /// The resource, as C names it: `RLIMIT_NOFILE`.
        resource: &'static str,
        /// The `errno`.
        errno: i32,
    },
}

impl Limits {
    /// Whether no limit is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The resources and the soft limits asked for, in the order they are
    /// set (a memory limit stands for four resources).
    pub(crate) fn wanted(&self) -> Vec<(Resource, u64)> {
        let mut out = Vec::new();
        if let Some(m) = self.mem {
            out.extend(MEMORY_RESOURCES.iter().map(|r| (*r, m)));
        }
        let singles = [
            // Without a limit of its own, a service gets back the soft limit
            // that the supervisor had before it raised its own.
            (Resource::RLIMIT_NOFILE, self.files.or_else(|| INHERITED_NOFILE.get().copied())),
            (Resource::RLIMIT_NPROC, self.procs),
            (Resource::RLIMIT_CPU, self.cpu),
            (Resource::RLIMIT_CORE, self.core),
        ];
        out.extend(singles.into_iter().filter_map(|(r, v)| v.map(|v| (r, v))));
        out
    }

    /// The limits to set, against this process's hard limits (which a
    /// child inherits): each soft limit is the one asked for, capped at the
    /// hard limit.
    ///
    /// # Errors
    ///
    /// [`LimitError::Get`] when a hard limit cannot be read.
    pub(crate) fn resolve(&self) -> Result<Vec<Rlimit>, LimitError> {
        self.wanted()
            .into_iter()
            .map(|(resource, want)| {
                let (_, hard) = getrlimit(resource)
                    .map_err(|e| LimitError::Get { resource: resource_name(resource), errno: e as i32 })?;
                Ok(Rlimit { resource, soft: capped(want, hard), hard })
            })
            .collect()
    }

    /// Sets the limits on this process (for a program about to `exec`).
    ///
    /// # Errors
    ///
    /// [`LimitError`] for the first limit that cannot be read or set.
    pub fn apply(&self) -> Result<(), LimitError> {
        for l in self.resolve()? {
            setrlimit(l.resource, l.soft, l.hard)
                .map_err(|e| LimitError::Set { resource: resource_name(l.resource), errno: e as i32 })?;
        }
        Ok(())
    }
}

/// The soft limit on open files that this process had before
/// [`raise_open_files_limit`] raised it.
static INHERITED_NOFILE: OnceLock<u64> = OnceLock::new();

/// Raises this process's soft limit on open files to its hard limit, so
/// that a supervisor of many services does not run out of descriptors
/// (each service costs it a few). Services started afterwards still get
/// the soft limit the process had before (unless their
/// [`Limits::files`](crate::Limits::files) says otherwise): programs that
/// use `select(2)` break with descriptors above 1023. Returns the new soft
/// limit.
///
/// # Errors
///
/// When the limit cannot be read or set.
pub fn raise_open_files_limit() -> Result<u64, LimitError> {
    let nofile = Resource::RLIMIT_NOFILE;
    let (soft, hard) =
        getrlimit(nofile).map_err(|e| LimitError::Get { resource: resource_name(nofile), errno: e as i32 })?;
    INHERITED_NOFILE.get_or_init(|| soft);
    if soft < hard {
        setrlimit(nofile, hard, hard)
            .map_err(|e| LimitError::Set { resource: resource_name(nofile), errno: e as i32 })?;
    }
    Ok(hard)
}

/// `want`, but at most `hard` (`RLIM_INFINITY` is the largest value).
fn capped(want: u64, hard: u64) -> u64 {
    want.min(hard)
}

/// The C name of a resource: `RLIMIT_NOFILE`.
pub fn resource_name(resource: Resource) -> &'static str {
    match resource {
        Resource::RLIMIT_AS => "RLIMIT_AS",
        Resource::RLIMIT_CORE => "RLIMIT_CORE",
        Resource::RLIMIT_CPU => "RLIMIT_CPU",
        Resource::RLIMIT_DATA => "RLIMIT_DATA",
        Resource::RLIMIT_MEMLOCK => "RLIMIT_MEMLOCK",
        Resource::RLIMIT_NOFILE => "RLIMIT_NOFILE",
        Resource::RLIMIT_NPROC => "RLIMIT_NPROC",
        Resource::RLIMIT_STACK => "RLIMIT_STACK",
        _ => "RLIMIT_?",
    }
}

/// Why a lock file could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another open file description holds the lock (and the caller did
    /// not want to wait).
    #[error("lock {} is held by another process", .0.display())]
    Held(PathBuf),
    /// The file cannot be opened or created.
    #[error("open lock file {}: {source}", path.display())]
    Open {
        /// The lock file.
        path: PathBuf,
        /// The `open` error.
        source: io::Error,
    },
    /// `flock` failed for another reason than a holder.
    #[error("lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The `flock` error.
        source: io::Error,
    },
}

/// Opens (creating it, mode `0600` before the umask) and locks `path` with
/// `flock(LOCK_EX)`, as `setlock` does: waiting for the lock when `wait`,
/// or failing at once with [`LockError::Held`].
///
/// The descriptor is at least 3 (never one of the standard streams) and
/// close-on-exec unless `inheritable`. The lock is never released on drop
/// by anything but the kernel: it lasts while a descriptor for this open
/// file description is open anywhere (a child that inherited one, for
/// example).
///
/// # Errors
///
/// [`LockError`].
pub fn take_lock(path: &Path, wait: bool, inheritable: bool) -> Result<OwnedFd, LockError> {
    let open_error = |source| LockError::Open { path: path.to_path_buf(), source };
    // std opens close-on-exec.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(open_error)?;
    let mut fd = OwnedFd::from(file);
    if fd.as_raw_fd() < 3 {
        // Our standard streams were closed: keep clear of them, as the
        // child's stdio replaces descriptors 0 to 2 (try_clone dups to 3
        // or more).
        fd = fd.try_clone().map_err(open_error)?;
    }
    if inheritable {
        crate::os::sys::set_cloexec(fd.as_raw_fd(), false).map_err(open_error)?;
    }
    match crate::os::sys::flock_exclusive(fd.as_raw_fd(), wait) {
        Ok(()) => Ok(fd),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(LockError::Held(path.to_path_buf())),
        Err(source) => Err(LockError::Lock { path: path.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UNLIMITED;

    #[test]
    fn no_limits_by_default() {
        assert!(Limits::default().is_empty());
        assert!(Limits::default().wanted().is_empty());
        assert_eq!(Limits::default().resolve(), Ok(Vec::new()));
        assert!(!Limits { core: Some(0), ..Limits::default() }.is_empty());
    }

    #[test]
    fn memory_sets_four_resources_like_softlimit_m() {
        let l = Limits { mem: Some(1 << 30), files: Some(64), procs: Some(10), cpu: Some(60), core: Some(0) };
        let w = l.wanted();
        assert_eq!(
            w,
            [
                (Resource::RLIMIT_DATA, 1 << 30),
                (Resource::RLIMIT_STACK, 1 << 30),
                (Resource::RLIMIT_MEMLOCK, 1 << 30),
                (Resource::RLIMIT_AS, 1 << 30),
                (Resource::RLIMIT_NOFILE, 64),
                (Resource::RLIMIT_NPROC, 10),
                (Resource::RLIMIT_CPU, 60),
                (Resource::RLIMIT_CORE, 0),
            ]
        );
        let names: Vec<_> = w.iter().map(|(r, _)| resource_name(*r)).collect();
        assert_eq!(names[..4], ["RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_MEMLOCK", "RLIMIT_AS"]);
    }

    #[test]
    fn soft_limits_are_capped_at_the_hard_limit() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let r = Limits { files: Some(UNLIMITED), ..Limits::default() }.resolve().unwrap();
        assert_eq!(r, [Rlimit { resource: Resource::RLIMIT_NOFILE, soft: hard, hard }]);
        let r = Limits { files: Some(7), core: Some(0), ..Limits::default() }.resolve().unwrap();
        assert_eq!((r[0].soft, r[0].hard), (7.min(hard), hard));
        assert_eq!(r[1].resource, Resource::RLIMIT_CORE);
        assert_eq!(r[1].soft, 0);
        assert_eq!(capped(10, 5), 5);
        assert_eq!(capped(UNLIMITED, UNLIMITED), UNLIMITED);
        assert_eq!(capped(3, UNLIMITED), 3);
    }

    #[test]
    fn errors_name_the_resource() {
        let e = LimitError::Set { resource: "RLIMIT_NOFILE", errno: nix::Error::EPERM as i32 };
        assert_eq!(e.to_string(), "setrlimit RLIMIT_NOFILE: Operation not permitted");
    }

    fn cloexec(fd: &OwnedFd) -> bool {
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn a_held_lock_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = take_lock(&path, false, false).unwrap();
        assert!(path.exists(), "created");
        assert!(cloexec(&first));
        assert!(first.as_raw_fd() >= 3);
        // A second open file description conflicts, even in this process.
        let e = take_lock(&path, false, true).unwrap_err();
        assert!(matches!(e, LockError::Held(_)), "{e}");
        assert_eq!(e.to_string(), format!("lock {} is held by another process", path.display()));
        // A copy of the descriptor keeps the lock after the original closes.
        let copy = first.try_clone().unwrap();
        drop(first);
        assert!(matches!(take_lock(&path, false, false), Err(LockError::Held(_))));
        drop(copy);
        let again = take_lock(&path, true, true).unwrap();
        assert!(!cloexec(&again), "inheritable");
    }

    #[test]
    fn an_unopenable_lock_names_the_file() {
        let e = take_lock(Path::new("/nonexistent-dir-xyz/lock"), false, false).unwrap_err();
        assert!(e.to_string().starts_with("open lock file /nonexistent-dir-xyz/lock: "), "{e}");
    }
}
