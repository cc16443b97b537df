//! The few system calls the command line makes for itself (the library
//! fences its own); each `unsafe` block says why it is sound.

/// Gives the memory that start-up freed (parsing the command line and the
/// configuration) back to the system, where the C library can: a daemon
/// that then runs for months should not keep its start-up's peak. Returns
/// whether anything was released.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks and shrinks the allocator's own
        // free lists; it takes the allocator's locks and is safe to call at
        // any time from a single-threaded program.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Gives back the part of the main thread's stack that start-up used and
/// left (parsing the command line and the configuration goes deep): the
/// pages more than 16 KB below the current frame, dropped with
/// `madvise(MADV_DONTNEED)`, to come back as zeroed pages if the stack
/// grows there again. Call it from the main thread of a single-threaded
/// process, at a shallow point. Returns the bytes advised.
pub fn release_unused_stack() -> usize {
    const MARGIN: usize = 16 * 1024;
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return 0 };
    let Some(range) = maps.lines().find(|l| l.ends_with("[stack]")).and_then(|l| l.split(' ').next()) else {
        return 0;
    };
    let Some((lo, hi)) = range.split_once('-') else { return 0 };
    let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) else { return 0 };
    if !(lo..hi).contains(&here) {
        return 0;
    }
    let end = (here - MARGIN.min(here - lo)) & !4095;
    if end <= lo {
        return 0;
    }
    // SAFETY: [lo, end) is the main thread's stack below the frame of this
    // call, by more than the 128-byte red zone and the frames of the calls
    // made from here: no live data is there (the process has one thread,
    // and a signal handler runs on this stack only below the current
    // frame, after the call returns). MADV_DONTNEED on private anonymous
    // memory only replaces those pages with zeroed ones at their next use.
    if unsafe { libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_DONTNEED) } == 0 {
        end - lo
    } else {
        0
    }
}

/// Sets the name the kernel shows for this process (`comm`, as `ps -o
/// comm` and `top` show it; cut to 15 bytes).
pub fn set_process_name(name: &str) {
    let bytes: Vec<u8> = name.bytes().filter(|b| *b != 0).take(15).collect();
    if let Ok(name) = std::ffi::CString::new(bytes) {
        let _ = nix::sys::prctl::set_name(&name);
    }
}

/// Restores the default disposition of the signals that the Rust runtime
/// (`SIGPIPE`) or the library ignore, before this
/// process `exec`s another program: ignored signals survive `exec`.
/// (The library ignores `SIGXFSZ` while it writes transcripts.)
pub fn default_ignored_signals() {
    for sig in [libc::SIGPIPE, libc::SIGXFSZ] {
        // SAFETY: installing SIG_DFL runs no handler code.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// The variables through which the command line talks to the supervisor
/// process it starts; services must not inherit them (a service's own
/// `supervisor status` would otherwise act on its supervisor's file).
const CONTROL_ENV: [&str; 2] = ["SUPERVISOR_CONFIG", "SUPERVISOR_SOCKET"];

/// Removes [`CONTROL_ENV`] from this process's environment, which the
/// services inherit. Call it while the process is single-threaded (the
/// supervisor process, before it starts anything).
pub fn scrub_control_env() {
    for var in CONTROL_ENV {
        std::env::remove_var(var);
    }
}

/// What the service manager that started this process (the host's
/// systemd) set for it: `NOTIFY_SOCKET`, and the watchdog period
/// (`WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or names this process).
/// Taken out of the environment, which the services inherit. Call it
/// while the process is single-threaded.
pub fn take_manager_env() -> Option<(String, Option<std::time::Duration>)> {
    let socket = std::env::var("NOTIFY_SOCKET").ok();
    let usec = std::env::var("WATCHDOG_USEC").ok().and_then(|v| v.parse::<u64>().ok());
    let for_us = std::env::var("WATCHDOG_PID").ok().is_none_or(|p| p.parse() == Ok(std::process::id()));
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(var);
    }
    let watchdog = usec.filter(|_| for_us).map(std::time::Duration::from_micros);
    socket.filter(|s| !s.is_empty()).map(|s| (s, watchdog))
}
