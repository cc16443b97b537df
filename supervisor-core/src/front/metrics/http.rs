//! The little HTTP that the metrics endpoint speaks: a request head read
//! with a limit ([`parse`]), and the responses it sends ([`response`]):
//! HTTP/1.1, always `Connection: close`. Pure functions of bytes, so that
//! any input (garbage, a partial request, an endless one) is tested
//! without a socket.

use crate::model::metrics::CONTENT_TYPE;

/// The longest request head (request line and headers) read; a longer one
/// is answered `431` and the connection closed.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// What a request asks for, and so how it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /metrics` (`head`: `HEAD`, answered without the body).
    Metrics {
        /// A `HEAD` request.
        head: bool,
    },
    /// Another path: `404`.
    NotFound {
        /// A `HEAD` request.
        head: bool,
    },
    /// Another method: `405`.
    MethodNotAllowed,
    /// Not an HTTP request: `400`.
    BadRequest,
    /// A head longer than [`MAX_HEAD`]: `431`.
    TooLarge,
    /// Not HTTP/1.0 or HTTP/1.1: `505`.
    BadVersion,
    /// Too many clients at once: `503`.
    Busy,
    /// The engine did not give the metrics: `500`.
    Failed,
}

/// How far a request head read so far goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not complete yet: read more.
    Partial,
    /// Complete (or bad enough to answer at once).
    Done(Route),
}

/// Where the head in `buf` ends (just after its empty line), if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[at..]) {
        let nl = at + i;
        // The line before this newline is empty: "\n\n" or "\n\r\n".
        let line = &buf[at..nl];
        if at > 0 && (line.is_empty() || line == b"\r") {
            return Some(nl + 1);
        }
        at = nl + 1;
    }
    None
}

/// Reads the request head received so far: [`Parsed::Partial`] until it
/// is complete, unless its request line already says it is bad, or it is
/// longer than [`MAX_HEAD`]. Leading empty lines are skipped, as RFC 9112
/// allows; the headers are not looked at (the answer is the same
/// whatever they say).
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let buf = &buf[start..];
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return if start + buf.len() > MAX_HEAD { Parsed::Done(Route::TooLarge) } else { Parsed::Partial };
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let route = request_line(line);
    if matches!(route, Route::Metrics { .. } | Route::NotFound { .. }) {
        // Answered once the whole head is in (a client that sends its
        // head in pieces is not cut off while it writes).
        match head_end(&buf[nl..]) {
            Some(end) if start + nl + end <= MAX_HEAD => {}
            Some(_) => return Parsed::Done(Route::TooLarge),
            None if start + buf.len() > MAX_HEAD => return Parsed::Done(Route::TooLarge),
            None => return Parsed::Partial,
        }
    }
    Parsed::Done(route)
}

/// What a request line (without its line end) asks for.
fn request_line(line: &[u8]) -> Route {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    let token =
        |s: &[u8]| !s.is_empty() && s.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token(method) || target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Route::BadRequest;
    }
    match version {
        b"HTTP/1.1" | b"HTTP/1.0" => {}
        v if v.len() == 8
            && v.starts_with(b"HTTP/")
            && v[5].is_ascii_digit()
            && v[6] == b'.'
            && v[7].is_ascii_digit() =>
        {
            return Route::BadVersion;
        }
        _ => return Route::BadRequest,
    }
    let head = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    // origin-form (`/metrics?x`), or absolute-form (`http://host/metrics`).
    let path = match target.iter().position(|&b| b == b'?' || b == b'#') {
        Some(i) => &target[..i],
        None => target,
    };
    let path = if let Some(rest) = path.strip_prefix(b"http://").or_else(|| path.strip_prefix(b"https://")) {
        rest.iter().position(|&b| b == b'/').map_or(&b"/"[..], |i| &rest[i..])
    } else {
        path
    };
    if path == b"/metrics" {
        Route::Metrics { head }
    } else {
        Route::NotFound { head }
    }
}

/// The whole response for `route`; `body` is the exposition for
/// [`Route::Metrics`].
pub(crate) fn response(route: Route, body: &str) -> Vec<u8> {
    let (status, text, head, extra) = match route {
        Route::Metrics { head } => ("200 OK", body, head, ""),
        Route::NotFound { head } => ("404 Not Found", "not found: the metrics are at /metrics\n", head, ""),
        Route::MethodNotAllowed => {
            ("405 Method Not Allowed", "method not allowed: use GET\n", false, "Allow: GET, HEAD\r\n")
        }
        Route::BadRequest => ("400 Bad Request", "bad request\n", false, ""),
        Route::TooLarge => ("431 Request Header Fields Too Large", "request head too large\n", false, ""),
        Route::BadVersion => ("505 HTTP Version Not Supported", "use HTTP/1.1 or HTTP/1.0\n", false, ""),
        Route::Busy => ("503 Service Unavailable", "too many clients; try again\n", false, "Retry-After: 1\r\n"),
        Route::Failed => ("500 Internal Server Error", "the metrics could not be made\n", false, ""),
    };
    let content_type = if matches!(route, Route::Metrics { .. }) { CONTENT_TYPE } else { "text/plain; charset=utf-8" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        text.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(text.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(bytes: &[u8]) -> Route {
        match parse(bytes) {
            Parsed::Done(r) => r,
            Parsed::Partial => panic!("{:?} is partial", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn a_scrape_is_answered_once_its_head_is_complete() {
        let req = b"GET /metrics HTTP/1.1\r\nHost: localhost:9100\r\nAccept: text/plain\r\n\r\n";
        for n in 0..req.len() {
            assert_eq!(parse(&req[..n]), Parsed::Partial, "{n} bytes");
        }
        assert_eq!(done(req), Route::Metrics { head: false });
        assert_eq!(done(b"GET /metrics HTTP/1.0\n\n"), Route::Metrics { head: false });
        assert_eq!(done(b"\r\nGET /metrics?name[]=x HTTP/1.1\r\n\r\n"), Route::Metrics { head: false });
        assert_eq!(done(b"GET http://h:1/metrics HTTP/1.1\r\n\r\n"), Route::Metrics { head: false });
        assert_eq!(done(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Route::Metrics { head: true });
    }

    #[test]
    fn other_paths_methods_and_versions() {
        assert_eq!(done(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound { head: false });
        assert_eq!(done(b"GET /metrics/ HTTP/1.1\r\n\r\n"), Route::NotFound { head: false });
        assert_eq!(done(b"GET http://h HTTP/1.1\r\n\r\n"), Route::NotFound { head: false });
        assert_eq!(done(b"POST /metrics HTTP/1.1\r\n"), Route::MethodNotAllowed, "answered without the rest");
        assert_eq!(done(b"DELETE /x HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert_eq!(done(b"GET /metrics HTTP/2.0\r\n"), Route::BadVersion);
        assert_eq!(done(b"GET /metrics HTTP/1.1 x\r\n"), Route::BadRequest);
    }

    #[test]
    fn garbage_is_a_bad_request_and_never_a_panic() {
        for bad in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n"[..],
            b"GET\n",
            b"GET  /metrics HTTP/1.1\n",
            b"GET /met\x00rics HTTP/1.1\n",
            b"G(T /metrics HTTP/1.1\n",
            b"GET /metrics HTTP/1.1\x00\n",
            b"GET /metrics http/1.1\n",
            b" \n",
        ] {
            assert_eq!(done(bad), Route::BadRequest, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b""), Parsed::Partial);
        assert_eq!(parse(b"\r\n\r\n\r\n"), Parsed::Partial);
        // Every prefix and every byte flipped: an answer or a wait, no panic.
        let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        for i in 0..req.len() {
            for b in [0u8, b'\n', b'\r', b' ', 0xff] {
                let mut v = req.to_vec();
                v[i] = b;
                let _ = parse(&v);
                let _ = parse(&v[..i]);
            }
        }
    }

    #[test]
    fn an_oversized_head_is_refused() {
        let mut req = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while req.len() <= MAX_HEAD {
            assert_eq!(parse(&req), Parsed::Partial);
            req.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(done(&req), Route::TooLarge);
        req.extend_from_slice(b"\r\n");
        assert_eq!(done(&req), Route::TooLarge, "complete, but too long");
        let mut fits = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        fits.resize(MAX_HEAD - 4, b'a');
        fits.extend_from_slice(b"\r\n\r\n");
        assert_eq!(done(&fits), Route::Metrics { head: false }, "exactly {MAX_HEAD} bytes");
        assert_eq!(done(&vec![b'a'; MAX_HEAD + 1]), Route::TooLarge, "a request line without an end");
        assert_eq!(parse(&vec![b'a'; MAX_HEAD]), Parsed::Partial);
        assert_eq!(done(&vec![b'\n'; MAX_HEAD + 1]), Route::TooLarge, "empty lines count");
    }

    #[test]
    fn responses_close_and_say_their_length() {
        let text = String::from_utf8(response(Route::Metrics { head: false }, "a 1\n")).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 4\r\n\
             Connection: close\r\n\r\na 1\n"
        );
        let head = String::from_utf8(response(Route::Metrics { head: true }, "a 1\n")).unwrap();
        assert!(head.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n"), "{head}");
        let not_allowed = String::from_utf8(response(Route::MethodNotAllowed, "")).unwrap();
        assert!(not_allowed.starts_with("HTTP/1.1 405 ") && not_allowed.contains("\r\nAllow: GET, HEAD\r\n"));
        for r in [Route::NotFound { head: false }, Route::BadRequest, Route::TooLarge, Route::Busy, Route::Failed] {
            let text = String::from_utf8(response(r, "")).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("Content-Length: {}", body.len())) && head.contains("Connection: close"));
        }
    }
}
