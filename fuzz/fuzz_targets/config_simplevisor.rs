//! The simplevisor (`Config::General`) reader: `simplevisor::to_toml` on
//! any UTF-8 text, then `Config::parse` of the TOML it wrote.
//!
//! The file is taken to be `simplevisor.conf` in a scratch directory (see
//! `scratch_dir`), made once, that holds a few files for `<<include>>`s to
//! find: services, a list that includes a glob, a file that includes
//! itself, one that includes `../service.conf` from a subdirectory, one
//! that is not UTF-8, a directory, a FIFO and a sparse file of 16 MiB + 1
//! byte (the last three the reader must refuse without opening them: the
//! FIFO would block, the big file is over its size limit).
//!
//! Every input is read, whatever its `$`, braces, commas or includes
//! (the reader bounds `$var` expansions to 64 KiB, `{a,b}` alternatives to
//! 1024 names, and includes to regular files of at most 16 MiB: README.md,
//! "Findings", 3), except one kind, for the safety of the fuzzing machine:
//! an input with an `<<include>>` that could name a file outside the
//! scratch directory (an absolute target, or one that holds or could make
//! a `..`; see `may_leave_scratch`) is not read, so that the fuzzer never
//! opens the machine's own files: `/proc/kmsg`, debugfs's `trace_pipe`
//! and the like are regular files that block, and a glob like
//! `/*/*/*/*` would walk the whole file system.
//!
//! Checked: no panic, no hang (`-timeout`), bounded memory
//! (`-rss_limit_mb`); the TOML written is TOML (`Config::parse` may refuse
//! what it says, never with a TOML syntax error); a configuration that
//! loads holds only services the engine accepts; error reports print.

#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use supervisor_cli::config::{simplevisor, Config};

#[path = "common.rs"]
mod common;

/// The scratch directory's files: (path, content). Directories are made
/// for them as needed.
const FILES: &[(&str, &[u8])] = &[
    (
        "service.conf",
        b"<entry>\n    type = service\n    name = included\n    start = /bin/true --from $included_var\n</entry>\n",
    ),
    ("vars.conf", b"included_var = from-include\n"),
    (
        "services/a.conf",
        b"<entry>\n type = service\n name = httpd\n control = /sbin/service httpd\n</entry>\n",
    ),
    (
        "services/b.conf",
        b"<entry>\n type = service\n name = worker\n start = /opt/bin/worker --daemon\n \
          stop = /opt/bin/worker --stop\n status = /opt/bin/worker --status\n</entry>\n",
    ),
    ("services/.hidden.conf", b"junk that a glob must not match\n"),
    ("list.conf", b"<<include services/*.conf>>\n"),
    (
        "group.conf",
        b"<entry>\n type = supervisor\n name = grp\n strategy = one_for_one\n <children>\n  \
          <<include list.conf>>\n </children>\n</entry>\n",
    ),
    ("loop.conf", b"<<include loop.conf>>\n"),
    ("sub/up.conf", b"<<include ../service.conf>>\n"),
    ("broken.conf", b"<entry>\n type = service\n name = broken\n"),
    ("bad-key.conf", b"<entry>\n type = service\n name = x\n colour = red\n start = /bin/x\n</entry>\n"),
    ("latin1.conf", b"name = caf\xe9\n"),
    ("empty.conf", b""),
    ("dir.conf/a.conf", b"# a directory named like a file\n"),
];

/// The size of `big.conf`, a sparse file: one byte more than the reader's
/// limit (`MAX_INCLUDE_SIZE`, 16 MiB).
const BIG: u64 = 16 * 1024 * 1024 + 1;

/// Makes the scratch directory's content in `dir` (which is new).
fn populate(dir: &Path) -> std::io::Result<()> {
    for (name, content) in FILES {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().expect("a parent"))?;
        fs::write(&path, content)?;
    }
    fs::File::create(dir.join("big.conf"))?.set_len(BIG)?;
    let fifo = std::ffi::CString::new(dir.join("fifo").into_os_string().into_encoded_bytes()).expect("no NUL");
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The scratch directory: `$TMPDIR/supervisor-fuzz-simplevisor-v1`, made
/// once (in a directory of this process's own, then renamed into place,
/// so that it is always whole) and kept for the next runs; its name
/// changes with `FILES`.
fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        let tmp = fs::canonicalize(&tmp).unwrap_or(tmp);
        let dir = tmp.join("supervisor-fuzz-simplevisor-v1");
        if !dir.is_dir() {
            let new = tmp.join(format!("supervisor-fuzz-simplevisor-v1.{}", std::process::id()));
            let _ = fs::remove_dir_all(&new);
            populate(&new).expect("the scratch directory");
            if fs::rename(&new, &dir).is_err() {
                // Another process made it first.
                let _ = fs::remove_dir_all(&new);
                assert!(dir.is_dir(), "no scratch directory at {}", dir.display());
            }
        }
        dir
    })
}

fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| scratch_dir().join("simplevisor.conf"))
}

/// Whether an `<<include>>` of `text` could name a file outside the
/// scratch directory. It errs on the side of yes: every physical line is
/// looked at as it is, and as the reader may see it after a `/* */`
/// comment is taken out (`strip_c_comment`) or after the `*/` that ends
/// a comment, each cut at its `#` comment (`comment_start`); an include
/// line is one that `include_target` would take (without needing the
/// `>>`); its target leaves when it is absolute, or holds `..`, or holds
/// two `.` and a `{` or `\` (brace alternatives or glob escapes that
/// could make a `..` component). A relative target otherwise stays
/// below the directory of the file that includes it, and every file it
/// can reach is in the scratch directory. (`Config::General` reads
/// includes before variables are interpolated, so a `$` in a target is a
/// `$`.) Keep in step with `simplevisor/syntax.rs`.
fn may_leave_scratch(text: &str) -> bool {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.split('\n').any(|raw| {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let mut lines = vec![raw.to_owned()];
        lines.extend(strip_c_comment(raw));
        if let Some(end) = raw.rfind("*/") {
            lines.push(raw[end + 2..].to_owned());
        }
        lines.iter().any(|line| {
            let line = match comment_start(line) {
                Some(i) => &line[..i],
                None => line,
            };
            include_target(line).is_some_and(target_leaves)
        })
    })
}

/// `simplevisor/syntax.rs`'s `strip_c_comment`.
fn strip_c_comment(line: &str) -> Option<String> {
    let start = line.find("/*")?;
    let end = start + 2 + line[start + 2..].rfind("*/")? + 2;
    let before = line[..start].trim_end_matches(char::is_whitespace);
    let after = line[end..].trim_start_matches(char::is_whitespace);
    Some(format!("{before}{after}"))
}

/// `simplevisor/syntax.rs`'s `comment_start`.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1] != b'\\'))
}

/// `simplevisor/syntax.rs`'s `include_target`, more lenient: the `>>`
/// may be missing, and the quotes are left for `target_leaves`.
fn include_target(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("<<")?;
    if !rest.get(..7)?.eq_ignore_ascii_case("include") {
        return None;
    }
    let rest = &rest[7..];
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(rest.strip_suffix(">>").unwrap_or(rest))
}

fn target_leaves(target: &str) -> bool {
    let t = target.trim_start_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
    t.starts_with('/') || t.contains("..") || (t.contains(['{', '\\']) && t.matches('.').count() >= 2)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if may_leave_scratch(text) {
        return;
    }
    let path = config_path();
    let toml = match simplevisor::to_toml(path, text) {
        Ok(toml) => toml,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an Err without errors");
            let _ = errors.to_string();
            return;
        }
    };
    match Config::parse(path, &toml) {
        Ok(config) => common::check_config(&config),
        Err(errors) => {
            for e in &errors.0 {
                assert!(!e.message.starts_with("invalid TOML"), "the converter wrote bad TOML: {e}\n{toml}");
            }
            common::check_errors(&errors, path, &toml);
        }
    }
});
