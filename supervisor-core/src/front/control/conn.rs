//! One client of the control socket: its buffers, its deadlines, and the
//! request lines taken out of its input.

use std::os::unix::net::UnixStream;
use std::time::Instant;

use serde_json::Value;

use super::{IDLE_TIMEOUT, MAX_IN_FLIGHT, REQUEST_TIMEOUT};
use crate::engine::ClientId;
use crate::model::protocol::{parse_request, ErrorCode, Request, Response, MAX_REQUEST};

#[derive(Debug)]
pub(super) struct Client {
    pub(super) stream: UnixStream,
    pub(super) input: Vec<u8>,
    pub(super) output: Vec<u8>,
    pub(super) skipping: bool,
    pub(super) in_flight: usize,
    pub(super) last_active: Instant,
    /// When the request line in `input` began, while it is incomplete.
    pub(super) partial_since: Option<Instant>,
    pub(super) closing: bool,
    /// It follows `events`: its request stays in flight, and it goes as
    /// soon as it hangs up.
    pub(super) streaming: bool,
    /// What its descriptor is watched for in the clients' epoll set.
    pub(super) watched: u32,
}

impl Client {
    /// What its descriptor should be watched for: input unless it is
    /// closing, room to write while an answer waits.
    pub(super) fn wanted(&self) -> u32 {
        let mut ev = 0;
        if !self.closing {
            ev |= libc::EPOLLIN as u32;
        }
        if !self.output.is_empty() {
            ev |= libc::EPOLLOUT as u32;
        }
        ev
    }
}

impl Client {
    /// When it must be dropped, if nothing changes: an incomplete request
    /// must be finished in time, an idle client goes after a while; one
    /// that waits for answers stays.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.in_flight > 0 {
            return None;
        }
        let idle = self.last_active + IDLE_TIMEOUT;
        Some(self.partial_since.map_or(idle, |t| (t + REQUEST_TIMEOUT).min(idle)))
    }

    /// Whether it may be dropped to make room: nothing of its own is
    /// pending (no request in flight, no answer to deliver).
    pub(super) fn evictable(&self) -> bool {
        self.in_flight == 0 && self.output.is_empty()
    }
}

impl Client {
    /// Takes the whole lines out of a client's input, of which the first
    /// `seen` bytes are known to hold no newline. Each byte is searched
    /// once, and the input is shifted once per read, not once per line: a
    /// line that comes a byte at a time, or many lines in one read, cost
    /// time in proportion to their length (both were quadratic).
    pub(super) fn split_lines(&mut self, id: ClientId, seen: usize, requests: &mut Vec<(ClientId, Request)>) {
        // The input before `start` is taken; none before `from` is a newline.
        let (mut start, mut from) = (0, seen.min(self.input.len()));
        while let Some(pos) = self.input[from..].iter().position(|b| *b == b'\n').map(|p| p + from) {
            let line = self.input[start..pos].to_vec();
            (start, from) = (pos + 1, pos + 1);
            if std::mem::take(&mut self.skipping) || line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if line.len() > MAX_REQUEST {
                let msg = format!("request too large (limit {MAX_REQUEST} bytes)");
                self.output.extend(Response::error(Value::Null, ErrorCode::TooLarge, msg).to_line());
                continue;
            }
            match parse_request(&line) {
                Ok(req) if self.in_flight >= MAX_IN_FLIGHT => {
                    let r = Response::error(req.id, ErrorCode::Busy, "too many requests in flight");
                    self.output.extend(r.to_line());
                }
                Ok(req) => {
                    self.in_flight += 1;
                    requests.push((id, req));
                }
                Err(resp) => self.output.extend(resp.to_line()),
            }
        }
        self.input.drain(..start);
        if self.input.len() > MAX_REQUEST {
            if !self.skipping {
                let msg = format!("request too large (limit {MAX_REQUEST} bytes)");
                self.output.extend(Response::error(Value::Null, ErrorCode::TooLarge, msg).to_line());
            }
            self.skipping = true;
            self.input.clear();
        }
    }
}
