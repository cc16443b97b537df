//! One cgroup (version 2) per service, for tracking only: every process a
//! service has is listed in its cgroup's `cgroup.procs`, also the ones that
//! left its process group and session by a double fork and `setsid`. So the
//! processes of one service are found by reading one small file, in time
//! proportional to their number, not to the number of services.
//!
//! The tree is made under the supervisor's own cgroup, when it may write
//! there (root, or a cgroup delegated to its user):
//!
//! ```text
//! <own cgroup>/supervisor-<pid>/svc-<name>
//! ```
//!
//! No controller is enabled in it: nothing is limited or accounted, so the
//! supervisor itself may stay in its own cgroup (the "no internal
//! processes" rule only binds cgroups that hand controllers down). Where
//! the tree cannot be made (no cgroup 2 mount, read-only, not ours), the
//! engine finds a service's processes through the process table instead,
//! as before.
//!
//! A service's main process is made in its cgroup
//! (`clone3(CLONE_INTO_CGROUP)`, Linux 5.7), so that nothing it ever forks
//! is outside. (Moving a process there instead, by writing to
//! `cgroup.procs`, waits for an RCU grace period: several milliseconds on
//! every start.) The directories (also those of services
//! removed by a reload) are removed when the engine goes (an empty cgroup can be removed, a busy one cannot: a service's
//! process that outlives its supervisor keeps its directory); the trees of
//! supervisors that died without removing theirs are removed at the next
//! start, once empty.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The prefix of a supervisor's tree; its pid follows.
const TREE_PREFIX: &str = "supervisor-";
/// The prefix of a service's cgroup; its escaped name follows.
const SERVICE_PREFIX: &str = "svc-";

/// The cgroup tree of this supervisor.
#[derive(Debug)]
pub(crate) struct CgroupTree {
    base: PathBuf,
}

impl CgroupTree {
    /// Makes this process's tree, or says why it cannot be made.
    pub(crate) fn create() -> Result<CgroupTree, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let dir = own_cgroup_dir(&mountinfo, &own).ok_or("no cgroup 2 hierarchy holds this process")?;
        remove_stale_trees(&dir);
        let base = dir.join(format!("{TREE_PREFIX}{}", std::process::id()));
        match fs::create_dir(&base) {
            Ok(()) => Ok(CgroupTree { base }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(CgroupTree { base }),
            Err(e) => Err(format!("cannot make {}: {e}", base.display())),
        }
    }

    /// The directory of the tree.
    pub(crate) fn base(&self) -> &Path {
        &self.base
    }

    /// The cgroup directory of service `name`.
    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.base.join(service_dir_name(name))
    }

    /// Makes service `name`'s cgroup if needed, and opens its directory
    /// for a child to be made in it.
    pub(crate) fn prepare(&self, name: &str) -> io::Result<OwnedFd> {
        let dir = self.dir(name);
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_DIRECTORY)
            .open(&dir)?;
        Ok(file.into())
    }

    /// The processes in service `name`'s cgroup (zombies are not listed).
    pub(crate) fn procs(&self, name: &str) -> io::Result<Vec<i32>> {
        let text = fs::read_to_string(self.dir(name).join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        remove_tree(&self.base);
    }
}

/// Removes a tree's empty service cgroups, then the tree if it is empty.
fn remove_tree(base: &Path) {
    if let Ok(dir) = fs::read_dir(base) {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(SERVICE_PREFIX) {
                let _ = fs::remove_dir(e.path());
            }
        }
    }
    let _ = fs::remove_dir(base);
}

/// Removes the trees that supervisors which are gone left in `dir`.
fn remove_stale_trees(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(TREE_PREFIX)).and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
        if gone {
            remove_tree(&e.path());
        }
    }
}

/// A service's cgroup directory name: its name after `svc-`, with `/` and
/// `%` escaped (`web/log` is `svc-web%2Flog`).
fn service_dir_name(name: &str) -> String {
    let mut out = String::with_capacity(SERVICE_PREFIX.len() + name.len());
    out.push_str(SERVICE_PREFIX);
    for c in name.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// The directory of this process's cgroup, from the texts of
/// `/proc/self/mountinfo` and `/proc/self/cgroup`: the cgroup 2 mount
/// whose root holds the process's cgroup path.
fn own_cgroup_dir(mountinfo: &str, cgroup: &str) -> Option<PathBuf> {
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    if path.contains("(deleted)") {
        return None;
    }
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split(' ').next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = mount.split(' ').collect();
        let (root, point) = (*fields.get(3)?, *fields.get(4)?);
        if point.contains('\\') || root.contains('\\') {
            return None;
        }
        let rel = if root == "/" { path } else { path.strip_prefix(root)? };
        if !(rel.is_empty() || rel.starts_with('/')) {
            return None;
        }
        Some(PathBuf::from(format!("{point}{}", rel.trim_end_matches('/'))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
24 29 0:22 / /sys type sysfs rw,nosuid - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
36 24 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";

    #[test]
    fn finds_the_own_cgroup_under_the_cgroup2_mount() {
        let own = "1:pids:/x\n0::/system.slice/app.service\n";
        assert_eq!(own_cgroup_dir(MOUNTS, own), Some(PathBuf::from("/sys/fs/cgroup/unified/system.slice/app.service")));
        assert_eq!(own_cgroup_dir(MOUNTS, "0::/\n"), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        // Only a cgroup 1 line, or no cgroup 2 mount: none.
        assert_eq!(own_cgroup_dir(MOUNTS, "1:pids:/x\n"), None);
        assert_eq!(own_cgroup_dir("24 29 0:22 / /sys rw - sysfs sysfs rw\n", "0::/\n"), None);
    }

    #[test]
    fn a_mount_of_a_subtree_holds_only_paths_below_its_root() {
        let mounts = "40 24 0:30 /user.slice /mnt/cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(own_cgroup_dir(mounts, "0::/user.slice/a\n"), Some(PathBuf::from("/mnt/cg/a")));
        assert_eq!(own_cgroup_dir(mounts, "0::/user.slicex/a\n"), None);
        assert_eq!(own_cgroup_dir(mounts, "0::/system.slice\n"), None);
    }

    #[test]
    fn service_names_are_escaped() {
        assert_eq!(service_dir_name("web"), "svc-web");
        assert_eq!(service_dir_name("web/log"), "svc-web%2Flog");
        assert_eq!(service_dir_name("50%/x"), "svc-50%25%2Fx");
    }
}
