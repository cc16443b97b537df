//! `clone3(2)` with `CLONE_INTO_CGROUP`: the child is made in a cgroup,
//! instead of moved there (a move waits for an RCU grace period, several
//! milliseconds on an idle machine, on every start).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// The kernel said it has no `clone3` or no `CLONE_INTO_CGROUP`
/// (before Linux 5.7): not tried again.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Makes the next spawns act as on a kernel without `clone3` (tests of the
/// fallback).
#[cfg(test)]
pub(super) fn pretend_unsupported(yes: bool) {
    UNSUPPORTED.store(yes, Ordering::Relaxed);
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` as of Linux 5.7 (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Makes a child in the cgroup whose directory is `dir`, sharing our
/// memory, on `stack` (`size` bytes), running `f(arg)`; returns once
/// it has exec'd or exited (`CLONE_VFORK`). An error of kind
/// `Unsupported` when the kernel cannot.
///
/// # Safety
///
/// As `clone(CLONE_VM | CLONE_VFORK)`: `f` must only make
/// async-signal-safe calls, never return, and use only memory that
/// outlives the call (we are suspended until it execs or exits); all
/// signals must be blocked; `stack` must be valid for `size` bytes.
pub(super) unsafe fn into_cgroup(
    dir: RawFd,
    stack: *mut u8,
    size: usize,
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
    extra_flags: libc::c_int,
) -> io::Result<i32> {
    if UNSUPPORTED.load(Ordering::Relaxed) || dir < 0 {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "clone3 with CLONE_INTO_CGROUP"));
    }
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK | extra_flags) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack as u64,
        stack_size: size as u64,
        cgroup: dir as u64,
        ..CloneArgs::default()
    };
    // SAFETY: the caller's duties are those of `raw`.
    let r = unsafe { raw(&raw mut args, f, arg) };
    if r >= 0 {
        return Ok(r as i32);
    }
    let errno = (-r) as i32;
    if matches!(errno, libc::ENOSYS | libc::E2BIG | libc::EINVAL) {
        UNSUPPORTED.store(true, Ordering::Relaxed);
        return Err(io::Error::new(io::ErrorKind::Unsupported, "clone3 with CLONE_INTO_CGROUP (Linux 5.7)"));
    }
    Err(io::Error::from_raw_os_error(errno))
}

/// The system call. The kernel starts the child on the top of the
/// stack given in `args`, right after the `syscall` instruction, with
/// our registers but `rax` = 0: there it calls `f(arg)` (16-byte
/// aligned, as a call wants) and exits with what `f` returns, should it
/// return. The parent gets the child's pid or `-errno`.
///
/// # Safety
///
/// See [`into_cgroup`].
#[cfg(target_arch = "x86_64")]
unsafe fn raw(args: *mut CloneArgs, f: extern "C" fn(*mut libc::c_void) -> libc::c_int, arg: *mut libc::c_void) -> i64 {
    let ret: i64;
    // SAFETY: the caller's duties; the parent's path only makes the
    // system call (rcx and r11 are clobbered by it); the child's path
    // never comes back here.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, 60",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") f,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Elsewhere: not supported (the child is made with `clone` and the
/// service is tracked through `/proc`).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw(
    _args: *mut CloneArgs,
    _f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    _arg: *mut libc::c_void,
) -> i64 {
    -i64::from(libc::ENOSYS)
}
