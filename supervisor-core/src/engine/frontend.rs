//! What the engine needs of a front end that reaches it from outside the
//! program (the control socket): descriptors to poll, requests out, answers
//! in. The front end lives above the engine (`front/`) and implements this;
//! the engine knows nothing of sockets or JSON.

use std::fmt::Debug;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::model::protocol::{Request, Response};

/// Which of a front end's clients a request came from.
pub(crate) type ClientId = u64;

/// A source of requests that the engine polls.
pub(crate) trait FrontEnd: Debug + Send {
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
