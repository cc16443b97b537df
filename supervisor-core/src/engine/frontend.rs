//! What the engine needs of a front end that reaches it from outside the
//! program (the control socket, the metrics endpoint): descriptors to
//! poll, requests out, answers in. The front ends live above the engine
//! (`front/`) and implement this; the engine knows nothing of sockets,
//! JSON or HTTP.

use std::fmt::Debug;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::model::protocol::{Request, Response};

/// Which of a front end's clients a request came from.
pub(crate) type ClientId = u64;

/// Which of the engine's front ends: its place in [`FrontEnds`].
pub(crate) type FrontId = usize;

/// What a front end is for: an engine has at most one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The control socket: its requests are counted, and it can be
    /// repaired.
    Control,
    /// The metrics endpoint (`GET /metrics`).
    Metrics,
}

/// A source of requests that the engine polls.
pub(crate) trait FrontEnd: Debug + Send {
    /// What it is for.
    fn role(&self) -> Role;

    /// The descriptors to poll now, with the `poll` events wanted.
    fn poll_fds(&self) -> Vec<(RawFd, i16)>;

    /// When it next needs a turn without a ready descriptor (an idle
    /// client to drop).
    fn deadline(&self) -> Option<Instant>;

    /// Some of its descriptors are ready: the requests that arrived.
    fn ready(&mut self, ready: &[RawFd], now: Instant) -> Vec<(ClientId, Request)>;

    /// A turn without a ready descriptor of its own.
    fn idle(&mut self, now: Instant);

    /// The answer to a request of `client`.
    fn respond(&mut self, client: ClientId, response: &Response);

    /// The engine is done: deliver what is pending, for at most `limit`.
    fn close(&mut self, limit: Duration);

    /// One more line of a stream to `client` (`events`), which stays
    /// open; false when the client is gone (or was dropped for not
    /// reading).
    fn stream(&mut self, _client: ClientId, _line: &Response) -> bool {
        false
    }

    /// Makes what a client needs to reach it again, if it is gone (the
    /// control socket's file): true when it serves afterwards.
    fn repair(&mut self) -> bool {
        true
    }
}

/// The front ends of an engine, at most one per [`Role`].
#[derive(Debug, Default)]
pub(super) struct FrontEnds {
    list: Vec<Box<dyn FrontEnd>>,
    /// Requests taken from the control socket.
    pub(super) control_requests: u64,
}

impl FrontEnds {
    /// Adds `front`, in place of the one of its role.
    pub(super) fn attach(&mut self, front: Box<dyn FrontEnd>) {
        match self.list.iter_mut().find(|f| f.role() == front.role()) {
            Some(old) => *old = front,
            None => self.list.push(front),
        }
    }

    /// Front end `id`, while it is there.
    pub(super) fn get_mut(&mut self, id: FrontId) -> Option<&mut (dyn FrontEnd + 'static)> {
        self.list.get_mut(id).map(|f| &mut **f)
    }

    /// The front end of `role`, if there is one.
    pub(super) fn of_role(&mut self, role: Role) -> Option<&mut (dyn FrontEnd + 'static)> {
        self.list.iter_mut().find(|f| f.role() == role).map(|f| &mut **f)
    }

    /// The descriptors to poll, each with its front end and the events
    /// wanted.
    pub(super) fn poll_fds(&self) -> impl Iterator<Item = (FrontId, RawFd, i16)> + '_ {
        self.list.iter().enumerate().flat_map(|(id, f)| f.poll_fds().into_iter().map(move |(fd, ev)| (id, fd, ev)))
    }

    /// The nearest moment a front end needs a turn without a ready
    /// descriptor.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.list.iter().filter_map(|f| f.deadline()).min()
    }

    /// A turn for every front end (`ready`: the descriptors with events,
    /// each with its front end): the requests that arrived.
    pub(super) fn take_requests(
        &mut self,
        ready: &[(FrontId, RawFd)],
        now: Instant,
    ) -> Vec<(FrontId, ClientId, Request)> {
        let mut requests = Vec::new();
        for (id, front) in self.list.iter_mut().enumerate() {
            let fds: Vec<RawFd> = ready.iter().filter(|(f, _)| *f == id).map(|&(_, fd)| fd).collect();
            let taken = if fds.is_empty() {
                front.idle(now);
                Vec::new()
            } else {
                front.ready(&fds, now)
            };
            if front.role() == Role::Control {
                self.control_requests += taken.len() as u64;
            }
            requests.extend(taken.into_iter().map(|(client, req)| (id, client, req)));
        }
        requests
    }

    /// The engine is done: each front end delivers what is pending (for
    /// at most `limit`), then all are dropped.
    pub(super) fn close(&mut self, limit: Duration) {
        for front in &mut self.list {
            front.close(limit);
        }
        self.list.clear();
    }
}
