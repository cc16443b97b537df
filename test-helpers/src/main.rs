//! `sv-test-helper`: tiny programs with one behaviour each, for the
//! integration tests to supervise instead of shell tricks.
//!
//! ```text
//! sv-test-helper sleep [FILE]            write "PID\n" to FILE (if given), then sleep forever
//! sv-test-helper stamp FILE             append "PID CLOCK_MONOTONIC_NS\n" to FILE, then sleep forever
//! sv-test-helper lines COUNT LEN [err]  write COUNT lines of LEN bytes (with the newline) to stdout
//!                                        (or stderr), each "NNNNNNNN xxxx...", as fast as it can, then
//!                                        sleep forever
//! sv-test-helper paced COUNT LEN RATE   the same lines, RATE lines a second (in batches every 10 ms),
//!                                        then sleep forever
//! sv-test-helper exit CODE               exit at once with CODE
//! sv-test-helper ignore-term FILE        ignore SIGTERM, write FILE, sleep forever
//! sv-test-helper fork-child FILE         fork a child in the same group; it writes its pid to FILE
//! sv-test-helper escape FILE             fork a child that calls setsid (leaves the group) and
//!                                        writes its pid to FILE; both sleep forever
//! sv-test-helper double-escape FILE    fork a child that calls setsid, forks the real daemon and exits
//!                                        (the daemon is orphaned, in a session of its own); the
//!                                        daemon writes its pid to FILE, and "TERM" to FILE.term when
//!                                        SIGTERM comes, then exits
//! sv-test-helper signals FILE            append each received signal's name (HUP, USR1, ...) to FILE,
//!                                        after writing "ready" to FILE.ready; TERM still ends it
//! sv-test-helper report FILE             write cwd, umask, uid, gid, groups and environment to FILE
//!                                        then sleep
//! sv-test-helper copy FILE              copy stdin to FILE (appending, unbuffered); on SIGTERM, finish
//!                                        writing what was read, then exit 0: a log service that loses
//!                                        nothing when it is stopped
//! sv-test-helper limits FILE             write the soft limits (data, stack, memlock, as, nofile, nproc,
//!                                        cpu, core: "NAME=N" or "NAME=unlimited"), pid, pgid and sid
//!                                        to FILE, then sleep forever
//! sv-test-helper connect-as UID SOCKET   become UID, connect to SOCKET, send stdin's first line,
//!                                        print the first line of the answer
//! sv-test-helper ready-fd N              write a newline on descriptor N (s6's readiness), close it,
//!                                        sleep forever
//! sv-test-helper notify-stamp FILE       write "CLOCK_REALTIME_NS\n" to FILE, then send READY=1 to
//!                                        $NOTIFY_SOCKET (sd_notify), sleep forever
//! sv-test-helper sd-notify STATUS        READY=1 and STATUS= through the `sd-notify` crate, then
//!                                        WATCHDOG=1 every 100 ms (as its watchdog helpers do)
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::exit;
use std::time::Duration;

use nix::sys::signal::{self, SigHandler, SigSet, Signal};
use nix::unistd::{fork, setsid, ForkResult};

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_hours(1));
    }
}

fn write_atomic(path: &str, text: &str) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    match args.first().map(String::as_str) {
        Some("sleep") => {
            if let Some(f) = args.get(1) {
                write_atomic(f, &format!("{}\n", std::process::id()));
            }
            sleep_forever()
        }
        Some("stamp") => {
            let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
            let ns = i128::from(now.tv_sec()) * 1_000_000_000 + i128::from(now.tv_nsec());
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(arg(1)).expect("open");
            writeln!(f, "{} {ns}", std::process::id()).expect("write");
            drop(f);
            sleep_forever()
        }
        Some("lines") => {
            let count: usize = arg(1).parse().unwrap_or_else(|_| usage());
            let len: usize = arg(2).parse().unwrap_or_else(|_| usage());
            assert!(len >= 10, "LEN must be at least 10");
            let to_err = args.get(3).is_some_and(|a| a == "err");
            let mut buf = Vec::with_capacity(1 << 16);
            let write = |buf: &mut Vec<u8>| {
                if to_err {
                    std::io::stderr().write_all(buf).expect("write");
                } else {
                    std::io::stdout().write_all(buf).expect("write");
                }
                buf.clear();
            };
            for i in 0..count {
                buf.extend_from_slice(format!("{i:08} ").as_bytes());
                buf.resize(buf.len() + len - 10, b'x');
                buf.push(b'\n');
                if buf.len() >= 60_000 {
                    write(&mut buf);
                }
            }
            write(&mut buf);
            sleep_forever()
        }
        Some("paced") => {
            let [count, len, rate]: [usize; 3] = [1, 2, 3].map(|i| arg(i).parse().unwrap_or_else(|_| usage()));
            assert!(len >= 10 && rate > 0, "LEN must be at least 10, RATE more than 0");
            let batch = (rate / 100).max(1);
            let start = std::time::Instant::now();
            let mut out = std::io::stdout().lock();
            let mut buf = Vec::with_capacity(batch * len);
            let mut i = 0;
            while i < count {
                let n = batch.min(count - i);
                for j in i..i + n {
                    buf.extend_from_slice(format!("{j:08} ").as_bytes());
                    buf.resize(buf.len() + len - 10, b'x');
                    buf.push(b'\n');
                }
                out.write_all(&buf).expect("write");
                buf.clear();
                i += n;
                let due = start + std::time::Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            drop(out);
            sleep_forever()
        }
        Some("exit") => exit(arg(1).parse().unwrap_or_else(|_| usage())),
        Some("ready-fd") => {
            let fd: i32 = arg(1).parse().unwrap_or_else(|_| usage());
            // SAFETY: the descriptor was given to this process for this
            // (s6's notification-fd); nothing else here owns it.
            let mut pipe = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            pipe.write_all(b"\n").expect("write the readiness newline");
            drop(pipe);
            sleep_forever()
        }
        Some("sd-notify") => {
            let status = arg(1);
            let states = [sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)];
            sd_notify::notify(false, &states).expect("sd_notify");
            loop {
                sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]).expect("sd_notify");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Some("notify-stamp") => {
            let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).expect("clock");
            let ns = i128::from(now.tv_sec()) * 1_000_000_000 + i128::from(now.tv_nsec());
            write_atomic(&arg(1), &format!("{ns}\n"));
            let socket = std::env::var("NOTIFY_SOCKET").expect("NOTIFY_SOCKET");
            let tx = std::os::unix::net::UnixDatagram::unbound().expect("socket");
            tx.send_to(b"READY=1", socket).expect("send READY=1");
            sleep_forever()
        }
        Some("ignore-term") => {
            // SAFETY: SIG_IGN installs no handler code.
            unsafe { signal::signal(Signal::SIGTERM, SigHandler::SigIgn) }.expect("signal");
            write_atomic(&arg(1), &format!("{}\n", std::process::id()));
            sleep_forever()
        }
        Some("fork-child" | "escape") => {
            let escape = args[0] == "escape";
            let file = arg(1);
            // SAFETY: the process is single-threaded here.
            match unsafe { fork() }.expect("fork") {
                ForkResult::Child => {
                    if escape {
                        setsid().expect("setsid");
                    }
                    write_atomic(&file, &format!("{}\n", std::process::id()));
                    sleep_forever()
                }
                ForkResult::Parent { .. } => sleep_forever(),
            }
        }
        Some("double-escape") => {
            let file = arg(1);
            // SAFETY: the process is single-threaded here.
            match unsafe { fork() }.expect("fork") {
                ForkResult::Child => {
                    setsid().expect("setsid");
                    // SAFETY: still single-threaded.
                    match unsafe { fork() }.expect("fork") {
                        ForkResult::Child => {
                            let mut term = SigSet::empty();
                            term.add(Signal::SIGTERM);
                            term.thread_block().expect("block");
                            write_atomic(&file, &format!("{}\n", std::process::id()));
                            if term.wait().expect("sigwait") == Signal::SIGTERM {
                                write_atomic(&format!("{file}.term"), "TERM\n");
                            }
                            exit(0)
                        }
                        ForkResult::Parent { .. } => exit(0),
                    }
                }
                ForkResult::Parent { .. } => sleep_forever(),
            }
        }
        Some("signals") => {
            let file = arg(1);
            let watched = [
                Signal::SIGHUP,
                Signal::SIGINT,
                Signal::SIGQUIT,
                Signal::SIGUSR1,
                Signal::SIGUSR2,
                Signal::SIGALRM,
                Signal::SIGWINCH,
                Signal::SIGCONT,
            ];
            let mut set = SigSet::empty();
            for s in watched {
                set.add(s);
            }
            set.thread_block().expect("block");
            write_atomic(&format!("{file}.ready"), "ready\n");
            loop {
                let sig = set.wait().expect("sigwait");
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&file).expect("open");
                writeln!(f, "{}", sig.as_str().trim_start_matches("SIG")).expect("write");
            }
        }
        Some("report") => {
            let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            let groups: Vec<String> =
                nix::unistd::getgroups().unwrap_or_default().iter().map(std::string::ToString::to_string).collect();
            let mut text = format!(
                "cwd={}\numask={:03o}\nuid={}\ngid={}\ngroups={}\n",
                std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
                umask.bits(),
                nix::unistd::getuid(),
                nix::unistd::getgid(),
                groups.join(",")
            );
            for (k, v) in std::env::vars() {
                text.push_str(&format!("env {k}={v}\n"));
            }
            for a in &args[2..] {
                text.push_str(&format!("arg {a}\n"));
            }
            write_atomic(&arg(1), &text);
            sleep_forever()
        }
        Some("copy") => {
            static TERM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            extern "C" fn on_term(_: libc::c_int) {
                TERM.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            // No SA_RESTART: a blocked read returns EINTR on TERM.
            let action =
                signal::SigAction::new(SigHandler::Handler(on_term), signal::SaFlags::empty(), SigSet::empty());
            // SAFETY: the handler only stores to an atomic.
            unsafe { signal::sigaction(Signal::SIGTERM, &action) }.expect("sigaction");
            let mut out = std::fs::OpenOptions::new().create(true).append(true).open(arg(1)).expect("open");
            let mut buf = [0u8; 4096];
            loop {
                if TERM.load(std::sync::atomic::Ordering::SeqCst) {
                    exit(0);
                }
                match nix::unistd::read(std::io::stdin(), &mut buf) {
                    Ok(0) => exit(0),
                    Ok(n) => out.write_all(&buf[..n]).expect("write"),
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
        Some("limits") => {
            use nix::sys::resource::{getrlimit, Resource};
            let resources = [
                ("data", Resource::RLIMIT_DATA),
                ("stack", Resource::RLIMIT_STACK),
                ("memlock", Resource::RLIMIT_MEMLOCK),
                ("as", Resource::RLIMIT_AS),
                ("nofile", Resource::RLIMIT_NOFILE),
                ("nproc", Resource::RLIMIT_NPROC),
                ("cpu", Resource::RLIMIT_CPU),
                ("core", Resource::RLIMIT_CORE),
            ];
            let mut text = String::new();
            for (name, resource) in resources {
                let (soft, _) = getrlimit(resource).expect("getrlimit");
                if soft == libc::RLIM_INFINITY {
                    text.push_str(&format!("{name}=unlimited\n"));
                } else {
                    text.push_str(&format!("{name}={soft}\n"));
                }
            }
            let pid = nix::unistd::getpid();
            let sid = nix::unistd::getsid(None).expect("getsid");
            text.push_str(&format!("pid={pid}\npgid={}\nsid={sid}\n", nix::unistd::getpgrp()));
            write_atomic(&arg(1), &text);
            sleep_forever()
        }
        Some("connect-as") => {
            let uid: u32 = arg(1).parse().unwrap_or_else(|_| usage());
            nix::unistd::setgroups(&[]).expect("setgroups");
            nix::unistd::setgid(nix::unistd::Gid::from_raw(uid)).expect("setgid");
            nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).expect("setuid");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).expect("stdin");
            let mut stream = match UnixStream::connect(arg(2)) {
                Ok(s) => s,
                Err(e) => {
                    println!("connect failed: {e}");
                    exit(3);
                }
            };
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let _ = stream.write_all(line.as_bytes());
            let mut answer = String::new();
            let _ = BufReader::new(stream).read_line(&mut answer);
            print!("{answer}");
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: sv-test-helper sleep|lines|paced|exit|ignore-term|fork-child|escape|double-escape|signals|report|connect-as|ready-fd|notify-stamp|sd-notify ..."
    );
    exit(2)
}
