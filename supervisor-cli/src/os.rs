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
