//! Reaching an engine from other threads: a [`Handle`] sends typed
//! requests through a channel and wakes the engine's `poll` with an
//! eventfd; the engine answers on a channel of the request's own.
//!
//! The same request path serves the control socket: a request carries
//! where its answer goes ([`ReplyTo`]), and everything else (resolving
//! names, refusing during a shutdown, holding an answer until services
//! settle) is shared.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use serde_json::Value;

use super::events::{StateChange, EVENT_BACKLOG};
use super::Engine;
use super::{ClientId, FrontId};
use crate::model::protocol::{Command, ErrorCode, Request, Response, Selection};
use crate::model::{signal_name, ServiceRequest, StatusSnapshot};
use nix::sys::signal::Signal;

/// Where the answer to a request goes.
#[derive(Debug, Clone)]
pub(crate) enum ReplyTo {
    /// A client of a front end (the control socket, the metrics
    /// endpoint).
    Socket(FrontId, ClientId),
    /// A [`Handle`], waiting on its channel.
    Handle(Sender<Response>),
}

/// What a [`Handle`] sends.
#[derive(Debug)]
enum Letter {
    /// A request, and the channel for its answer.
    Request(Command, Sender<Response>),
    /// A new subscriber to the state changes.
    Subscribe(SyncSender<StateChange>),
}

/// The engine's end of its handles: the channel they write to, and the
/// eventfd that wakes its `poll`.
#[derive(Debug)]
pub(super) struct Inbox {
    tx: Sender<Letter>,
    rx: Receiver<Letter>,
    wake: Arc<EventFd>,
}

impl Inbox {
    pub(super) fn new() -> std::io::Result<Inbox> {
        let wake = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let (tx, rx) = channel();
        Ok(Inbox { tx, rx, wake: Arc::new(wake) })
    }

    /// The descriptor to poll: readable once a handle sent something.
    pub(super) fn fd(&self) -> RawFd {
        self.wake.as_fd().as_raw_fd()
    }

    /// The eventfd, borrowed.
    pub(super) fn borrowed_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Makes the engine's `poll` return (and the host's, which polls the
    /// engine's descriptor).
    pub(super) fn wake(&self) {
        let _ = self.wake.write(1);
    }
}

/// A cheap, cloneable way to control an [`Engine`] from any thread: the
/// same requests as the control socket, answered by the engine's own
/// loop.
///
/// A request wakes the engine at once (an eventfd in its poll set); the
/// call returns once the engine has taken it (for [`shutdown`], once every
/// service is stopped). When the engine has been dropped, every call
/// returns [`HandleError::EngineGone`] instead of waiting.
///
/// A call waits for the engine's loop to take the request: do not call it
/// from the thread that runs [`Engine::run`] or [`Engine::turn`] (it would
/// wait for itself), and keep that loop turning.
///
/// ```
/// use supervisor_core::{Command, Engine, Service};
///
/// let mut engine = Engine::new("doc")?;
/// engine.add_service(Service::new("sleeper", Command::argv(["sleep", "30"])))?;
/// let handle = engine.handle();
/// let stopper = std::thread::spawn(move || {
///     handle.stop("sleeper")?;
///     handle.shutdown()
/// });
/// engine.run()?;
/// stopper.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`shutdown`]: Handle::shutdown
#[derive(Debug, Clone)]
pub struct Handle {
    tx: Sender<Letter>,
    wake: Arc<EventFd>,
}

/// Why a [`Handle`] call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// No service (or group) has this name.
    #[error("no service named {0:?}")]
    UnknownService(String),
    /// The engine was dropped.
    #[error("the engine is gone")]
    EngineGone,
    /// The engine is shutting down: it only stops services now.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The engine refused the request, for this reason.
    #[error("{0}")]
    Refused(String),
}

impl Handle {
    /// Starts a service (or a group's members, in order).
    ///
    /// # Errors
    ///
    /// See [`HandleError`].
    pub fn start(&self, name: &str) -> Result<(), HandleError> {
        self.command(name, ServiceRequest::Start)
    }

    /// Stops a service: its stop signal, then `SIGKILL` after its stop
    /// timeout. Returns once the engine has begun.
    ///
    /// # Errors
    ///
    /// See [`HandleError`].
    pub fn stop(&self, name: &str) -> Result<(), HandleError> {
        self.command(name, ServiceRequest::Stop)
    }

    /// Stops a service if it runs, then starts it.
    ///
    /// # Errors
    ///
    /// See [`HandleError`].
    pub fn restart(&self, name: &str) -> Result<(), HandleError> {
        self.command(name, ServiceRequest::Restart)
    }

    /// Suspends a service with `SIGSTOP`.
    ///
    /// # Errors
    ///
    /// See [`HandleError`].
    pub fn pause(&self, name: &str) -> Result<(), HandleError> {
        self.command(name, ServiceRequest::Pause)
    }

    /// Continues a paused service with `SIGCONT`.
    ///
    /// # Errors
    ///
    /// See [`HandleError`].
    pub fn resume(&self, name: &str) -> Result<(), HandleError> {
        self.command(name, ServiceRequest::Resume)
    }

    /// Sends any [`ServiceRequest`] to a service, as
    /// [`Engine::command`] does.
    ///
    /// # Errors
    ///
    /// See [`HandleError`].
    pub fn command(&self, name: &str, request: ServiceRequest) -> Result<(), HandleError> {
        let sel = Selection { names: vec![name.to_owned()], all: false };
        let command = match request {
            ServiceRequest::Start => Command::Start { sel, wait: false },
            ServiceRequest::Once => Command::Once { sel },
            ServiceRequest::Stop => Command::Stop { sel, wait: false },
            ServiceRequest::Restart => Command::Restart { sel, wait: false },
            ServiceRequest::Pause => Command::Pause { sel },
            ServiceRequest::Resume => Command::Resume { sel },
        };
        self.call(command, name).map(drop)
    }

    /// Sends `signal` to a service's processes (its process group and
    /// every tracked descendant). Returns whether it had a process to
    /// signal.
    ///
    /// # Errors
    ///
    /// See [`HandleError`].
    pub fn signal(&self, name: &str, signal: Signal) -> Result<bool, HandleError> {
        let sel = Selection { names: vec![name.to_owned()], all: false };
        let response = self.call(Command::Signal { signal: signal_name(signal).to_owned(), sel }, name)?;
        Ok(response.services.unwrap_or_default().iter().any(|r| r.ok))
    }

    /// The status of the engine and every service: the snapshot that the
    /// control socket serves.
    ///
    /// # Errors
    ///
    /// [`HandleError::EngineGone`].
    pub fn status(&self) -> Result<StatusSnapshot, HandleError> {
        let response = self.call(Command::Status { names: Vec::new() }, "")?;
        response.status.ok_or_else(|| HandleError::Refused("the engine sent no status".into()))
    }

    /// The metrics in Prometheus' text exposition format, as
    /// [`Engine::metrics`] gives them.
    ///
    /// # Errors
    ///
    /// [`HandleError::EngineGone`].
    pub fn metrics(&self) -> Result<String, HandleError> {
        let response = self.call(Command::Metrics, "")?;
        response.metrics.ok_or_else(|| HandleError::Refused("the engine sent no metrics".into()))
    }

    /// Stops every service (in reverse group order) and ends the engine's
    /// [`run`](Engine::run). Returns once every service is stopped; a
    /// second call, or one during a shutdown, waits for the same end.
    ///
    /// # Errors
    ///
    /// [`HandleError::EngineGone`].
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.call(Command::Shutdown, "").map(drop)
    }

    /// A receiver of every state change from now on (once the engine has
    /// taken the request: changes it makes before that are not in it), as
    /// [`Engine::subscribe`] gives one; for a thread that holds only a
    /// handle.
    ///
    /// # Errors
    ///
    /// [`HandleError::EngineGone`].
    pub fn subscribe(&self) -> Result<Receiver<StateChange>, HandleError> {
        let (tx, rx) = sync_channel(EVENT_BACKLOG);
        self.tx.send(Letter::Subscribe(tx)).map_err(|_| HandleError::EngineGone)?;
        let _ = self.wake.write(1);
        Ok(rx)
    }

    /// Sends `command` (about service `name`, if any) and waits for its
    /// answer.
    fn call(&self, command: Command, name: &str) -> Result<Response, HandleError> {
        let (tx, rx) = channel();
        self.tx.send(Letter::Request(command, tx)).map_err(|_| HandleError::EngineGone)?;
        let _ = self.wake.write(1);
        let response = rx.recv().map_err(|_| HandleError::EngineGone)?;
        match response.error {
            None => Ok(response),
            Some(e) => Err(match e.code {
                ErrorCode::UnknownService => HandleError::UnknownService(name.to_owned()),
                ErrorCode::ShuttingDown => HandleError::ShuttingDown,
                _ => HandleError::Refused(e.message),
            }),
        }
    }
}

impl Engine {
    /// A [`Handle`] to this engine, for other threads.
    pub fn handle(&self) -> Handle {
        Handle { tx: self.inbox.tx.clone(), wake: Arc::clone(&self.inbox.wake) }
    }

    /// Takes what handles sent since the last turn.
    pub(super) fn read_inbox(&mut self) {
        let _ = self.inbox.wake.read();
        while let Ok(letter) = self.inbox.rx.try_recv() {
            match letter {
                Letter::Request(command, tx) => {
                    self.handle_request(ReplyTo::Handle(tx), Request { id: Value::Null, command });
                }
                Letter::Subscribe(tx) => self.events.add(tx),
            }
        }
    }

    /// Sends `response` where it is wanted (a client that has gone, or a
    /// handle that stopped waiting, is skipped).
    pub(super) fn reply(&mut self, to: &ReplyTo, response: &Response) {
        match to {
            ReplyTo::Socket(front, client) => {
                if let Some(f) = self.fronts.get_mut(*front) {
                    f.respond(*client, response);
                }
            }
            ReplyTo::Handle(tx) => {
                let _ = tx.send(response.clone());
            }
        }
    }
}
