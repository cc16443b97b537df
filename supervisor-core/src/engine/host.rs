//! Driving the engine from a host's own event loop: one descriptor that is
//! readable whenever the engine has work ([`AsFd`]), and the nearest
//! deadline ([`Engine::next_deadline`]).
//!
//! The engine itself waits in `poll(2)` on the descriptors it has at each
//! turn. For a host, it keeps an epoll instance that watches the same
//! descriptors; it is made the first time the host asks for it, and
//! brought up to date at the end of every turn. Whatever changes the set
//! between turns (a service added, a command that spawns) wakes it, so the
//! host turns the engine and the set follows.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::Engine;
use crate::os::sys;

/// How often descriptors are looked at when the kernel gives no pidfds
/// (before Linux 5.3).
pub(super) const UNWATCHED_POLL: Duration = Duration::from_millis(100);

/// The epoll instance a host polls, and what it watches now.
#[derive(Debug)]
pub(super) struct HostPoll {
    epoll: OwnedFd,
    watched: RefCell<HashMap<RawFd, u32>>,
}

impl HostPoll {
    /// Makes the watched set `fds` (descriptor, `poll` events).
    fn sync(&self, fds: &[libc::pollfd]) {
        let mut watched = self.watched.borrow_mut();
        let wanted: HashMap<RawFd, u32> = fds.iter().map(|p| (p.fd, epoll_events(p.events))).collect();
        for fd in watched.keys() {
            if !wanted.contains_key(fd) {
                sys::epoll_forget(&self.epoll, *fd);
            }
        }
        // Every wanted descriptor is (re)declared: a number that was
        // closed and reused since the last turn is a new file to epoll.
        for (&fd, &events) in &wanted {
            if let Err(e) = sys::epoll_watch(&self.epoll, fd, events) {
                log::warn!("epoll: cannot watch descriptor {fd}: {e}");
            }
        }
        *watched = wanted;
    }
}

fn epoll_events(poll: i16) -> u32 {
    let mut ev = 0;
    if poll & libc::POLLIN != 0 {
        ev |= libc::EPOLLIN as u32;
    }
    if poll & libc::POLLOUT != 0 {
        ev |= libc::EPOLLOUT as u32;
    }
    ev
}

/// Made on the first [`AsFd::as_fd`] (`None`: it could not be made).
pub(super) type HostCell = OnceCell<Option<HostPoll>>;

impl Engine {
    /// The nearest moment at which the engine has something to do without
    /// any descriptor becoming ready (a backoff ends, a stop times out, a
    /// task is due), or `None` when only a descriptor can wake it.
    ///
    /// A host that drives the engine from its own loop waits on the
    /// engine's descriptor ([`AsFd`]) until this deadline, then calls
    /// [`turn`](Engine::turn) with `Some(Duration::ZERO)`.
    pub fn next_deadline(&self) -> Option<Instant> {
        let finishers = self.finishers.values().filter_map(|&i| self.slots.get(i)?.finishing.map(|(_, t)| t));
        let timers = self.timers.first().map(|&(t, _)| t).into_iter().chain(finishers).chain(self.checks.next());
        let ctl = self.fronts.deadline();
        // Pids waiting to be written to the state file.
        let save = (self.state_dirty && self.state_path.is_some())
            .then(|| self.saved_at.map(|t| t + super::saved::PID_SAVE_INTERVAL))
            .flatten();
        let unwatched = self.unwatched_members.then(|| Instant::now() + UNWATCHED_POLL);
        let init = self.init_deadline(Instant::now());
        let own = [self.sweep_at, init, self.manager_deadline()];
        timers.chain(ctl).chain(save).chain(unwatched).chain(own.into_iter().flatten()).min()
    }

    /// Whether a host polls the engine's descriptor.
    pub(super) fn hosted(&self) -> bool {
        matches!(self.host.get(), Some(Some(_)))
    }

    /// Wakes a host's loop: something changed outside a turn.
    pub(super) fn nudge(&self) {
        if self.hosted() {
            self.inbox.wake();
        }
    }

    /// Brings the host's epoll set up to date (after a turn).
    pub(super) fn sync_host(&self) {
        if let Some(Some(h)) = self.host.get() {
            let (fds, _) = self.poll_set();
            h.sync(&fds);
        }
    }
}

impl AsFd for Engine {
    /// A descriptor that is readable whenever the engine has work: put it
    /// in your own `poll`, `epoll` or `mio` loop, wait on it until
    /// [`next_deadline`](Engine::next_deadline), and call
    /// [`turn`](Engine::turn)`(Some(Duration::ZERO))`, which never blocks.
    ///
    /// It is an epoll descriptor that watches the engine's own: a signal,
    /// a request from a [`Handle`](crate::Handle), the control socket, a
    /// service's output, a process that ends.
    ///
    /// If the epoll instance cannot be made (the descriptor limit is
    /// reached), the engine logs the error and returns its wake-up eventfd
    /// instead, which is readable at least for requests from handles.
    fn as_fd(&self) -> BorrowedFd<'_> {
        let host = self.host.get_or_init(|| match sys::epoll_create() {
            Ok(epoll) => {
                let h = HostPoll { epoll, watched: RefCell::new(HashMap::new()) };
                h.sync(&self.poll_set().0);
                Some(h)
            }
            Err(e) => {
                log::error!("cannot make the engine's epoll descriptor: {e}");
                None
            }
        });
        match host {
            Some(h) => h.epoll.as_fd(),
            None => self.inbox.borrowed_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_events_become_epoll_events() {
        assert_eq!(epoll_events(libc::POLLIN), libc::EPOLLIN as u32);
        assert_eq!(epoll_events(libc::POLLIN | libc::POLLOUT), (libc::EPOLLIN | libc::EPOLLOUT) as u32);
    }
}
