//! The services' descriptors, in an epoll set of their own.
//!
//! Each service brings up to a few descriptors to watch: its output pipes,
//! a pidfd for its main process and each descendant it is known to have,
//! its `supervise/control` FIFO. With thousands of services, handing them
//! all to `poll(2)` at every turn makes every turn cost the kernel a look
//! at each one. Instead they live in an epoll instance, and the turn polls
//! that one descriptor beside the engine's own few (signals, handles, the
//! control socket).
//!
//! At the start of each turn, the services whose descriptors changed since
//! the last turn (a new process, a descendant gone, a pipe at end of file,
//! a `supervise/` directory opened) are registered again. The engine names
//! the services it touched (an event, an action, a ready descriptor, a
//! process found or reaped), and only those are looked at: a turn costs
//! the same with 10 services or 10,000. A change is seen in a signature of
//! the service's descriptors (numbers, kinds, and the pid each pidfd stands
//! for); debug builds compute it for every service at every turn and check
//! that no change went unnamed. First every changed service's old
//! registrations are removed, then its new ones added, so that a number
//! closed by one service and reused by another is never removed after it
//! was added. (A number cannot be closed and reused within one service
//! between two turns without changing its signature: a new process has a
//! new pid, and pipes and FIFOs are only made, not remade, in a turn.)
//!
//! Every registration carries a token of its own: an event whose token was
//! removed in the meantime is dropped. When the kernel refuses a
//! registration (out of memory, `max_user_watches`), the descriptor is
//! polled directly, as all of them were before, and registering it is
//! tried again at the next turn.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::turn::Source;
use super::Slot;
use crate::os::sys;

/// At most this many events are taken from the set in one turn; the rest
/// stay ready for the next.
const BATCH: usize = 512;

/// What is registered for one service.
#[derive(Debug, Default)]
struct Registered {
    /// The signature of its descriptors when they were registered (0:
    /// nothing registered yet, or a registration failed).
    signature: u64,
    /// (descriptor, token) of each registration.
    fds: Vec<(RawFd, u64)>,
}

/// The epoll set of the services' descriptors.
#[derive(Debug)]
pub(super) struct ServicePoll {
    epoll: OwnedFd,
    slots: Vec<Registered>,
    tokens: HashMap<u64, Source>,
    next_token: u64,
    /// Descriptors the kernel would not register: polled directly.
    fallback: Vec<(RawFd, Source)>,
    /// A refusal was logged as a warning (the next ones, tried at every
    /// turn, go to the debug level).
    warned: bool,
    events: Vec<(u64, u32)>,
}

/// Calls `f` with each descriptor of slot `i` to watch for input.
fn slot_fds(i: usize, s: &Slot, mut f: impl FnMut(RawFd, Source)) {
    if let Some(sd) = &s.supervise {
        f(sd.control_fd(), Source::Supervise(i));
    }
    if let Some(o) = &s.output {
        for (fd, stream) in o.poll_fds() {
            f(fd, Source::Output(i, stream));
        }
    }
    if let (Some(fd), Some(pid)) = (&s.leader_fd, s.leader) {
        f(fd.as_raw_fd(), Source::Leader(i, pid));
    }
    for m in &s.members {
        if let Some(fd) = &m.pidfd {
            f(fd.as_raw_fd(), Source::Member(i, m.pid));
        }
    }
    if let Some(fd) = s.checks.ready_fd() {
        f(fd, Source::ReadyPipe(i));
    }
    if let Some((fd, write)) = s.checks.probe_fd() {
        f(fd, Source::Probe(i, write));
    }
}

/// The signature of slot `i`'s descriptors (never 0): a quick mix of
/// each one's number, kind and pid, computed for every service at every
/// turn, so no cryptographic hash (a collision would only keep one
/// service's changed descriptors unregistered until its next change).
fn signature(i: usize, s: &Slot) -> u64 {
    let mut h: u64 = 0;
    let mut mix = |x: u64| h = (h.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    slot_fds(i, s, |fd, src| {
        mix(fd as u64);
        match src {
            Source::Supervise(_) => mix(1),
            Source::Output(_, stream) => mix(2 + stream as u64),
            Source::Member(_, pid) => mix(4 + ((pid as u64) << 8)),
            Source::Leader(_, pid) => mix(5 + ((pid as u64) << 8)),
            Source::ReadyPipe(_) => mix(6),
            Source::Probe(_, write) => mix(7 + u64::from(write)),
            _ => mix(3),
        }
    });
    h.max(1)
}

impl ServicePoll {
    /// An empty set.
    ///
    /// # Errors
    ///
    /// When the epoll instance cannot be made.
    pub(super) fn new() -> io::Result<ServicePoll> {
        Ok(ServicePoll {
            epoll: sys::epoll_create()?,
            slots: Vec::new(),
            tokens: HashMap::new(),
            next_token: 1,
            fallback: Vec::new(),
            warned: false,
            events: Vec::with_capacity(BATCH),
        })
    }

    /// The epoll instance's descriptor, readable when a service's
    /// descriptor is.
    pub(super) fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// The descriptors polled directly, because the kernel would not
    /// register them.
    pub(super) fn fallback(&self) -> &[(RawFd, Source)] {
        &self.fallback
    }

    /// Brings the set up to date with `slots`, of which only the ones in
    /// `touched` may have changed since the last call (taken).
    pub(super) fn sync(&mut self, slots: &[Slot], touched: &mut Vec<usize>) {
        #[cfg(debug_assertions)]
        for (i, s) in slots.iter().enumerate() {
            if let Some(r) = self.slots.get(i).filter(|r| r.signature != 0) {
                assert!(
                    r.signature == signature(i, s) || touched.contains(&i),
                    "service {i} ({}): its descriptors changed, and it was not touched",
                    s.svc.name
                );
            }
        }
        let mut candidates = std::mem::take(touched);
        // New services, and the ones a refused registration left out.
        candidates.extend(self.slots.len().min(slots.len())..slots.len());
        candidates.extend(self.fallback.iter().filter_map(|(_, src)| src.slot()));
        candidates.sort_unstable();
        candidates.dedup();
        let mut changed: Vec<(usize, u64)> = candidates
            .into_iter()
            .filter(|&i| i < slots.len())
            .map(|i| (i, signature(i, &slots[i])))
            .filter(|&(i, sig)| self.slots.get(i).is_none_or(|r| r.signature != sig))
            .collect();
        // Services gone from the end of the list.
        changed.extend((slots.len()..self.slots.len()).map(|i| (i, 0)));
        if changed.is_empty() {
            return;
        }
        for &(i, _) in &changed {
            if let Some(r) = self.slots.get_mut(i) {
                for (fd, token) in r.fds.drain(..) {
                    sys::epoll_forget(&self.epoll, fd);
                    self.tokens.remove(&token);
                }
                r.signature = 0;
            }
        }
        self.slots.truncate(slots.len());
        self.slots.resize_with(slots.len(), Registered::default);
        self.fallback.retain(|&(_, src)| !src.slot().is_some_and(|i| changed.iter().any(|&(c, _)| c == i)));
        for &(i, sig) in changed.iter().filter(|&&(i, _)| i < slots.len()) {
            let mut fds = Vec::new();
            let mut failed = false;
            slot_fds(i, &slots[i], |fd, src| {
                let token = self.next_token;
                self.next_token += 1;
                let events = if src.poll_events() == libc::POLLOUT { libc::EPOLLOUT } else { libc::EPOLLIN };
                match sys::epoll_add(&self.epoll, fd, events as u32, token) {
                    Ok(()) => {
                        self.tokens.insert(token, src);
                        fds.push((fd, token));
                    }
                    Err(e) => {
                        if std::mem::replace(&mut self.warned, true) {
                            log::debug!("epoll: cannot watch descriptor {fd} ({src:?}): {e}; polling it directly");
                        } else {
                            log::warn!("epoll: cannot watch descriptor {fd} ({src:?}): {e}; polling it directly");
                        }
                        self.fallback.push((fd, src));
                        failed = true;
                    }
                }
            });
            self.slots[i] = Registered { signature: if failed { 0 } else { sig }, fds };
        }
    }

    /// What is ready now, without waiting.
    ///
    /// # Errors
    ///
    /// When `epoll_wait` fails.
    pub(super) fn ready(&mut self) -> io::Result<Vec<Source>> {
        sys::epoll_ready(&self.epoll, &mut self.events, BATCH)?;
        Ok(self.events.iter().filter_map(|(token, _)| self.tokens.get(token).copied()).collect())
    }
}
