//! The client side of the control socket: one request, one answer, with
//! a deadline.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::model::protocol::{Request, Response};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nobody serves the socket (no file, or refused).
    #[error("no supervisor is running at {path}: {source}")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// What connect said.
        source: io::Error,
    },
    /// The answer did not come in time.
    #[error("no answer from the supervisor within {0:?}")]
    Timeout(Duration),
    /// Any other I/O error, or a connection closed early.
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    /// The answer was not a valid response.
    #[error("bad answer from the supervisor: {0}")]
    Protocol(String),
}

/// A blocking connection to a control socket.
#[derive(Debug)]
pub struct ControlClient {
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl ControlClient {
    /// Connects.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotRunning`] when nothing listens at `path`.
    pub fn connect(path: &Path) -> Result<ControlClient, ClientError> {
        let stream =
            UnixStream::connect(path).map_err(|source| ClientError::NotRunning { path: path.to_path_buf(), source })?;
        Ok(ControlClient { reader: BufReader::new(stream), next_id: 1 })
    }

    /// Sends one command and waits at most `timeout` for its answer.
    ///
    /// # Errors
    ///
    /// [`ClientError::Timeout`], I/O and protocol errors.
    pub fn call(
        &mut self,
        command: crate::model::protocol::Command,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = Request { id: Value::from(id), command };
        let mut line = serde_json::to_vec(&req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        if let Err(e) = self.send_raw(&line) {
            // A server that refuses a peer writes one error line and
            // closes: that line, not the broken pipe, is the answer.
            return match self.read_response(Duration::from_millis(100)) {
                Ok(resp) if resp.error.is_some() => Ok(resp),
                _ => Err(e),
            };
        }
        loop {
            let resp = self.read_response(timeout)?;
            if resp.id == id || resp.id.is_null() {
                return Ok(resp);
            }
        }
    }

    /// Writes raw bytes (for tests of the server's defences).
    ///
    /// # Errors
    ///
    /// The write error.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.reader.get_mut().write_all(bytes)?;
        Ok(())
    }

    /// Reads the next response line.
    ///
    /// # Errors
    ///
    /// [`ClientError::Timeout`], or an early end of the connection.
    pub fn read_response(&mut self, timeout: Duration) -> Result<Response, ClientError> {
        self.reader.get_ref().set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(ClientError::Io(io::Error::new(ErrorKind::UnexpectedEof, "connection closed"))),
            Ok(_) => serde_json::from_str(&line).map_err(|e| ClientError::Protocol(format!("{e}: {line}"))),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(ClientError::Timeout(timeout))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the server closes the connection (it exits).
    ///
    /// # Errors
    ///
    /// [`ClientError::Timeout`] when it is still open after `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(timeout));
            }
            self.reader.get_ref().set_read_timeout(Some(left))?;
            match self.reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(ClientError::Timeout(timeout))
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
