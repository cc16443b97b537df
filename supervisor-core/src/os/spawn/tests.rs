use super::*;

#[test]
fn finds_programs_in_path() {
    let p = find_program("sh", Some(OsStr::new("/nonexistent:/bin:/usr/bin")), None).unwrap();
    assert!(p.ends_with("sh"));
    assert!(find_program("no-such-program-xyz", None, None).is_none());
    assert_eq!(find_program("./x", None, Some(Path::new("/tmp"))).unwrap(), Path::new("/tmp/./x"));
}

#[test]
fn describes_failures() {
    let mut b = 7u32.to_ne_bytes().to_vec();
    b.extend_from_slice(&libc::ENOENT.to_ne_bytes());
    assert!(describe_exec_failure(&b, "/x").starts_with("exec /x: No such file"));
    let mut b = 2u32.to_ne_bytes().to_vec();
    b.extend_from_slice(&libc::ENOENT.to_ne_bytes());
    assert!(describe_exec_failure(&b, "/x").starts_with("chdir before exec"));
}

#[test]
fn the_child_gets_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("limits");
    let script = format!("ulimit -n > {0}; ulimit -c >> {0}", out.display());
    let mut svc = Service::new("limited", crate::Command::Argv(vec!["/bin/sh".into(), "-c".into(), script]));
    svc.limits = crate::Limits { files: Some(33), core: Some(0), ..Default::default() };
    let sp = spawn(&svc, Pipes::default(), &[]).unwrap();
    assert_eq!(sp.exec_error, None);
    crate::os::reap::reap_blocking(&[sp.pid]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "33\n0\n");
}

#[test]
fn the_child_holds_the_lock_for_as_long_as_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("lock");
    let mut svc = Service::new("locked", crate::Command::Argv(vec!["sleep".into(), "30".into()]));
    svc.lock = Some(lock.clone());
    let sp = spawn(&svc, Pipes::default(), &[]).unwrap();
    assert_eq!(sp.exec_error, None);
    // Our copy is closed: only the child holds the lock.
    assert!(matches!(take_lock(&lock, false, false), Err(LockError::Held(_))));
    let e = spawn(&svc, Pipes::default(), &[]).unwrap_err();
    assert!(e.is_transient());
    assert_eq!(e.to_string(), format!("lock {} is held by another process", lock.display()));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sp.pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    crate::os::reap::reap_blocking(&[sp.pid]);
    // Free once the child is gone. Other tests of this process fork too,
    // and a child of theirs holds a copy of every descriptor until its
    // exec closes it: give such a copy a moment (a copy kept here would
    // never be let go).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match take_lock(&lock, false, false) {
            Ok(fd) => break drop(fd),
            Err(LockError::Held(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("not free once the child is gone: {e}"),
        }
    }

    svc.lock = Some(dir.path().join("no-such-dir/lock"));
    let e = spawn(&svc, Pipes::default(), &[]).unwrap_err();
    assert!(!e.is_transient());
    assert!(e.to_string().starts_with("open lock file "), "{e}");
}

#[test]
fn describes_new_failures() {
    let mut b = 9u32.to_ne_bytes().to_vec();
    b.extend_from_slice(&libc::EPERM.to_ne_bytes());
    assert!(describe_exec_failure(&b, "/x").starts_with("setrlimit before exec of /x: "));
}

#[test]
fn a_child_gets_its_descriptors_from_the_high_range_and_none_of_the_others() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let high = crate::os::sys::high_fds();
    // The engine's own descriptors, kept high: the child must see none.
    let kept: Vec<OwnedFd> =
        (0..20).map(|_| crate::os::sys::keep_high(std::fs::File::open("/dev/null").unwrap().into())).collect();
    assert!(kept.iter().all(|f| f.as_raw_fd() >= high), "high from {high}: {kept:?}");
    // Its stdout, a pipe kept high too: the child gets it as fd 1.
    let (r, w) = crate::os::sys::pipe().unwrap();
    let w = crate::os::sys::keep_high(w);
    crate::os::sys::set_nonblocking(w.as_raw_fd(), false).unwrap();
    let mut svc =
        Service::new("fds", crate::Command::Argv(vec!["/bin/sh".into(), "-c".into(), "ls /proc/self/fd".into()]));
    svc.stdout = crate::Output::Pipe("out".into());
    let sp = spawn(&svc, Pipes { stdout: Some(w.as_raw_fd()), ..Pipes::default() }, &[]).unwrap();
    assert_eq!(sp.exec_error, None);
    drop(w);
    crate::os::reap::reap_blocking(&[sp.pid]);
    crate::os::sys::set_nonblocking(r.as_raw_fd(), false).unwrap();
    let mut listed = String::new();
    std::fs::File::from(r).read_to_string(&mut listed).unwrap();
    let fds: Vec<i32> = listed.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    assert!(fds.contains(&1), "{fds:?}");
    assert!(fds.iter().all(|&fd| fd < high), "a descriptor of ours leaked: {fds:?}");
}

/// Runs `sh -c 'echo ok'` with its stdout in a pipe; what it wrote.
fn echo_ok(cgroup: Option<RawFd>) -> (Spawned, String) {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (r, w) = crate::os::sys::pipe().unwrap();
    crate::os::sys::set_nonblocking(w.as_raw_fd(), false).unwrap();
    let mut svc = Service::new("echo", crate::Command::Argv(vec!["/bin/sh".into(), "-c".into(), "echo ok".into()]));
    svc.stdout = crate::Output::Pipe("out".into());
    let sp = spawn(&svc, Pipes { stdout: Some(w.as_raw_fd()), cgroup, ..Pipes::default() }, &[]).unwrap();
    drop(w);
    crate::os::reap::reap_blocking(&[sp.pid]);
    crate::os::sys::set_nonblocking(r.as_raw_fd(), false).unwrap();
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    (sp, out)
}

#[test]
fn without_a_partial_unshare_a_child_gets_a_full_copy_and_runs() {
    UNSHARE_UNSUPPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sp, out) = echo_ok(None);
    UNSHARE_UNSUPPORTED.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sp.exec_error, None);
    assert_eq!(out, "ok\n");
}

#[test]
fn without_clone3_a_child_runs_outside_its_cgroup_and_says_so() {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open("/tmp").unwrap();
    clone3::pretend_unsupported(true);
    let (sp, out) = echo_ok(Some(dir.as_raw_fd()));
    clone3::pretend_unsupported(false);
    assert_eq!(sp.exec_error, None);
    assert_eq!(out, "ok\n");
    let e = sp.cgroup_error.expect("the cgroup could not be used");
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
}
