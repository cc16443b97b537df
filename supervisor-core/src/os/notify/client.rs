//! The service's end of `sd_notify(3)`: what the supervisor tells the
//! service manager that started it (the host's systemd), when
//! `NOTIFY_SOCKET` was in its environment.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// An unbound datagram socket, and the manager's address.
#[derive(Debug)]
pub struct NotifyClient {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl NotifyClient {
    /// A client for `NOTIFY_SOCKET`'s value: a path, or an abstract name
    /// after `@`.
    ///
    /// # Errors
    ///
    /// An empty or overlong address; the socket cannot be made.
    pub fn new(notify_socket: &str) -> io::Result<NotifyClient> {
        let to = match notify_socket.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if notify_socket.starts_with('/') => SocketAddr::from_pathname(notify_socket)?,
            None => {
                let why = format!("NOTIFY_SOCKET={notify_socket:?} is neither an absolute path nor @name");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
            }
        };
        let socket = UnixDatagram::unbound()?;
        // A manager that does not read must never hold the loop up.
        socket.set_nonblocking(true)?;
        Ok(NotifyClient { socket, to })
    }

    /// Sends one datagram of `KEY=VALUE` lines.
    ///
    /// # Errors
    ///
    /// When it cannot be sent (the manager is gone, its queue is full).
    pub fn send(&self, lines: &str) -> io::Result<()> {
        self.socket.send_to_addr(lines.as_bytes(), &self.to).map(|_| ())
    }
}

/// A `STATUS=` value on one line: control characters become spaces.
pub fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_and_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        NotifyClient::new(path.to_str().unwrap()).unwrap().send("READY=1\nSTATUS=up").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");

        let name = format!("sv-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        NotifyClient::new(&format!("@{name}")).unwrap().send("WATCHDOG=1").unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn a_relative_or_empty_address_is_an_error() {
        for bad in ["", "notify.sock", "./n.sock"] {
            assert!(NotifyClient::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_status_stays_on_one_line() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
    }
}
