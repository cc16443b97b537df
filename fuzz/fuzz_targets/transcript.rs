//! Transcripts: line splitting, prefixes and rotation.
//!
//! `Transcript::open` with a `TranscriptConfig` taken from the input
//! (timestamps, tag, `max_size` of at least 200 bytes, `keep` 0..3), in a
//! directory of this process's own (on /dev/shm when there is one),
//! emptied before each input; then `write(Out/Err, chunk)` for chunks cut
//! from the input, `finish_lines()` where the input says (a process
//! ended) and at the end.
//!
//! Checked, exactly: the files (`PATH.keep` ... `PATH.1`, `PATH`) hold,
//! in order, the last generations of the lines written, each line whole
//! with its prefix (a well-formed timestamp, then `out `/`err ` of its
//! stream), where a line is what ended with a newline, or what was
//! waiting when `finish_lines` was called, or a piece of `MAX_LINE`
//! bytes of a longer line that had to wait; rotation happens before a
//! line that would take a file past `max_size`, never inside a line, and
//! a file passes `max_size` only when it holds one line; no `PATH.N`
//! beyond `keep`; nothing dropped, no error.
//!
//! Input: byte 0 flags (bits 0-1 timestamps: none, RFC 3339, TAI64N,
//! none; bit 2 tag; bits 3-4 keep; bit 5 no rotation), bytes 1-2
//! `max_size - 200` (mod 4000), then chunks: a header byte `h` (bit 0
//! the stream; `h < 0x80`: `h >> 1` bytes follow; `0x80..=0xFD`: the
//! length is `((h >> 1) & 63) << 8 | next byte`; `0xFE`: the next byte
//! repeated `(following byte + 1) * 512` times, a newline as `x`; `0xFF`:
//! `finish_lines()`).

#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use supervisor_core::{OutputStream, Timestamps, Transcript, TranscriptConfig};

/// `os/transcript.rs`'s `MAX_LINE`.
const MAX_LINE: usize = 64 * 1024;
/// More than this many bytes of output per input are not written (speed).
const MAX_TOTAL: usize = 256 * 1024;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base =
            if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("supervisor-fuzz-transcript-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("a directory");
        dir
    })
}

fn numbered(path: &std::path::Path, n: usize) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The lines the transcript must write, in order: the independent
/// statement of the line rules.
#[derive(Default)]
struct Lines {
    pending: [Vec<u8>; 2],
    out: Vec<(usize, Vec<u8>)>,
}

impl Lines {
    fn write(&mut self, stream: usize, data: &[u8]) {
        match data.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                let mut joined = std::mem::take(&mut self.pending[stream]);
                joined.extend_from_slice(&data[..=last]);
                for line in joined.split_inclusive(|&b| b == b'\n') {
                    self.out.push((stream, line.to_vec()));
                }
                self.pending[stream] = data[last + 1..].to_vec();
            }
            None => {
                self.pending[stream].extend_from_slice(data);
                while self.pending[stream].len() >= MAX_LINE {
                    let mut piece: Vec<u8> = self.pending[stream].drain(..MAX_LINE).collect();
                    piece.push(b'\n');
                    self.out.push((stream, piece));
                }
            }
        }
    }

    fn finish(&mut self) {
        for stream in 0..2 {
            if !self.pending[stream].is_empty() {
                let mut line = std::mem::take(&mut self.pending[stream]);
                line.push(b'\n');
                self.out.push((stream, line));
            }
        }
    }
}

/// Checks a timestamp prefix of the kind configured.
fn stamp_ok(ts: Timestamps, s: &[u8]) -> bool {
    let digit = |i: usize| s[i].is_ascii_digit();
    match ts {
        Timestamps::Rfc3339 => {
            // 2026-11-21T07:30:00.123456Z + space
            s.len() == 28
                && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25].iter().all(|&i| digit(i))
                && s[4] == b'-'
                && s[7] == b'-'
                && s[10] == b'T'
                && s[13] == b':'
                && s[16] == b':'
                && s[19] == b'.'
                && &s[26..] == b"Z "
        }
        Timestamps::Tai64n => {
            s.len() == 26
                && s[0] == b'@'
                && s[1..25].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                && s[25] == b' '
        }
        _ => s.is_empty(),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let flags = data[0];
    let timestamps = match flags & 3 {
        1 => Timestamps::Rfc3339,
        2 => Timestamps::Tai64n,
        _ => Timestamps::None,
    };
    let tag = flags & 4 != 0;
    let keep = usize::from((flags >> 3) & 3);
    let max_size = (flags & 0x20 == 0).then(|| 200 + u64::from(u16::from_le_bytes([data[1], data[2]]) % 4000));

    let path = dir().join("t.log");
    for p in std::iter::once(path.clone()).chain((1..=5).map(|n| numbered(&path, n))) {
        let _ = fs::remove_file(p);
    }
    let mut cfg = TranscriptConfig::new(&path);
    cfg.timestamps = timestamps;
    cfg.tag = tag;
    cfg.max_size = max_size;
    cfg.keep = keep;
    let mut t = Transcript::open("fuzz", cfg);
    let mut model = Lines::default();

    // Chunks.
    let streams = [OutputStream::Out, OutputStream::Err];
    let mut rest = &data[3..];
    let mut total = 0;
    let mut repeat = Vec::new();
    while let Some((&h, tail)) = rest.split_first() {
        rest = tail;
        if total > MAX_TOTAL {
            break;
        }
        let stream = usize::from(h & 1);
        let chunk: &[u8] = match h {
            0xFF => {
                t.finish_lines();
                model.finish();
                continue;
            }
            0xFE => {
                let (v, n) = (rest.first().copied().unwrap_or(b'x'), rest.get(1).copied().unwrap_or(0));
                rest = rest.get(2..).unwrap_or_default();
                repeat.clear();
                repeat.resize((usize::from(n) + 1) * 512, if v == b'\n' { b'x' } else { v });
                &repeat
            }
            0x80..=0xFD => {
                let len = usize::from((h >> 1) & 63) << 8 | usize::from(rest.first().copied().unwrap_or(0));
                rest = rest.get(1..).unwrap_or_default();
                let (chunk, after) = rest.split_at(len.min(rest.len()));
                rest = after;
                chunk
            }
            _ => {
                let (chunk, after) = rest.split_at(usize::from(h >> 1).min(rest.len()));
                rest = after;
                chunk
            }
        };
        total += chunk.len();
        t.write(streams[stream], chunk);
        model.write(stream, chunk);
    }
    t.finish_lines();
    model.finish();
    assert_eq!(t.dropped(), 0, "bytes dropped: {:?}", t.error());
    assert!(t.error().is_none(), "error: {:?}", t.error());

    // The files the lines must make: rotation before a line that would
    // take a non-empty file past max_size.
    let stamp_len = match timestamps {
        Timestamps::Rfc3339 => 28,
        Timestamps::Tai64n => 26,
        _ => 0,
    };
    let prefix = stamp_len + if tag { 4 } else { 0 };
    let mut generations: Vec<Vec<usize>> = Vec::new();
    let mut size = 0u64;
    for (i, (_, line)) in model.out.iter().enumerate() {
        let len = (prefix + line.len()) as u64;
        if generations.is_empty() {
            generations.push(Vec::new());
        } else if max_size.is_some_and(|max| size > 0 && size + len > max) {
            generations.push(Vec::new());
            size = 0;
        }
        generations.last_mut().expect("a generation").push(i);
        size += len;
    }

    // PATH is the last generation, PATH.1 the one before, ...
    let kept = generations.len().min(keep + 1);
    for n in 0..=keep + 1 {
        let p = if n == 0 { path.clone() } else { numbered(&path, n) };
        let expected = if n < kept { Some(&generations[generations.len() - 1 - n]) } else { None };
        let content = fs::read(&p).ok();
        let (Some(expected), Some(content)) = (expected, content.as_ref()) else {
            assert!(
                expected.is_none() && content.is_none(),
                "{}: expected {} lines, found {:?} bytes ({} generations, keep {keep})",
                p.display(),
                expected.map_or(0, Vec::len),
                content.as_ref().map(Vec::len),
                generations.len()
            );
            continue;
        };
        assert!(content.is_empty() || content.ends_with(b"\n"), "{}: does not end with a newline", p.display());
        let lines: Vec<&[u8]> = content.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), expected.len(), "{}: line count ({:?})", p.display(), max_size);
        if let Some(max) = max_size {
            assert!(
                content.len() as u64 <= max || lines.len() == 1,
                "{}: {} bytes, {} lines",
                p.display(),
                content.len(),
                lines.len()
            );
        }
        for (got, &i) in lines.iter().zip(expected) {
            let (stream, want) = &model.out[i];
            assert!(
                got.len() == prefix + want.len(),
                "{}: line {i}: length {} instead of {}",
                p.display(),
                got.len(),
                prefix + want.len()
            );
            assert!(
                stamp_ok(timestamps, &got[..stamp_len]),
                "bad timestamp {:?}",
                String::from_utf8_lossy(&got[..stamp_len])
            );
            if tag {
                let want_tag: &[u8] = if *stream == 0 { b"out " } else { b"err " };
                assert_eq!(&got[stamp_len..prefix], want_tag, "line {i}: tag");
            }
            assert!(&got[prefix..] == want.as_slice(), "{}: line {i} differs", p.display());
        }
    }
});
