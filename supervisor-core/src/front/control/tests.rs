use super::*;
use crate::model::protocol::MAX_REQUEST;

fn client() -> (Client, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let c = Client {
        stream: ours,
        input: Vec::new(),
        output: Vec::new(),
        skipping: false,
        in_flight: 0,
        last_active: Instant::now(),
        partial_since: None,
        closing: false,
        streaming: false,
        watched: 0,
    };
    (c, theirs)
}

/// Feeds `bytes` to the client in pieces of `piece` bytes, as reads would.
fn feed(c: &mut Client, bytes: &[u8], piece: usize) -> Vec<Request> {
    let mut requests = Vec::new();
    for chunk in bytes.chunks(piece) {
        let seen = c.input.len();
        c.input.extend_from_slice(chunk);
        c.split_lines(ClientId::default(), seen, &mut requests);
    }
    requests.into_iter().map(|(_, r)| r).collect()
}

#[test]
fn lines_are_split_however_they_arrive() {
    let text = b"{\"id\":1,\"cmd\":\"status\"}\n\n  \n{\"id\":2,\"cmd\":\"status\"}\n{\"id\":3,\"cmd\":\"sta";
    for piece in [1, 2, 7, 64, 4096] {
        let (mut c, _peer) = client();
        let got = feed(&mut c, text, piece);
        let ids: Vec<Value> = got.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, [Value::from(1), Value::from(2)], "pieces of {piece}");
        assert_eq!(c.input, b"{\"id\":3,\"cmd\":\"sta", "the unfinished line is kept");
        assert!(c.output.is_empty());
    }
}

#[test]
fn an_oversized_line_is_refused_once_and_the_next_one_is_read() {
    for piece in [1000, 16 * 1024] {
        let (mut c, _peer) = client();
        let mut text = vec![b'x'; MAX_REQUEST + 5000];
        text.extend_from_slice(b"\n{\"id\":9,\"cmd\":\"status\"}\n");
        let got = feed(&mut c, &text, piece);
        assert_eq!(got.len(), 1, "pieces of {piece}");
        assert_eq!(got[0].id, Value::from(9));
        let out = String::from_utf8(c.output.clone()).unwrap();
        assert_eq!(out.matches("too large").count(), 1, "{out}");
        assert!(c.input.is_empty() && !c.skipping);
    }
}
