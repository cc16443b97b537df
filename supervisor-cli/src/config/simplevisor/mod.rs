//! simplevisor configuration files, translated to our TOML.
//!
//! CERN's simplevisor reads an Apache-style file through Perl's
//! `Config::General` (with `IncludeRelative`, `IncludeGlob`, `IncludeAgain`
//! and `InterPolateVars`):
//!
//! ```text
//! <simplevisor>
//!     interval = 120
//!     loglevel = info
//! </simplevisor>
//! <entry>
//!     type = supervisor
//!     name = svisor1
//!     strategy = one_for_one
//!     <children>
//!         <entry>
//!             type = service
//!             name = httpd
//!             control = /sbin/service httpd
//!         </entry>
//!         <<include other_service.conf>>
//!     </children>
//! </entry>
//! ```
//!
//! [`looks_like`] recognises such a file by its first construct and
//! [`to_toml`] reads it with the rules of `Config::General` (comments with
//! `#` and `/* */`, `key = value` or `key value`, `"quoted"` values, `\`
//! continuation lines, here-documents, `<<include FILE>>` with globs,
//! `$var` and `${var}` interpolation, `\#`, `\$`, `\"`, `\\` escapes) and the
//! checks of simplevisor itself (the keys of each entry, required keys,
//! integers), then writes the equivalent TOML:
//!
//! - a `type = service` entry becomes `[service.NAME]` with
//!   `kind = "external"`; its commands become arrays of the words
//!   simplevisor would run (split on whitespace, each word `%XX`-unquoted),
//!   so that their meaning is exact;
//! - a `type = supervisor` entry becomes `[group.NAME]` with the names of
//!   its service children in order and its `strategy`; a supervisor nested
//!   in another becomes a group of its own when that has the same meaning
//!   (see [`to_toml`]), and is rejected otherwise;
//! - the `<simplevisor>` options go to `[supervisor]` (`loglevel`) and to
//!   each service (`interval` becomes `check_interval`); those with no
//!   equivalent are kept as comments.
//!
//! Every error names the simplevisor file (an included one where the
//! problem is), the line, the entry and the key.

mod convert;
mod glob;
mod syntax;
#[cfg(test)]
mod tests;
pub(super) mod values;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{ConfigError, ConfigErrors};
use convert::Converter;
use syntax::{comment_start, include_target, parse, Reader};

/// Whether `text` is a simplevisor configuration: its first construct,
/// after blank lines and comments, is an `<entry>` or `<simplevisor>`
/// block (in any case) or a `<<include FILE>>`.
#[must_use]
pub fn looks_like(text: &str) -> bool {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut in_comment = false;
    for line in text.lines() {
        let line = line.trim();
        if in_comment {
            in_comment = !line.contains("*/");
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("/*") {
            in_comment = !rest.contains("*/");
            continue;
        }
        let line = match comment_start(line) {
            Some(i) => line[..i].trim_end(),
            None => line,
        };
        let lower = line.to_ascii_lowercase();
        return lower == "<entry>" || lower == "<simplevisor>" || include_target(line).is_some();
    }
    false
}

/// Reads the simplevisor configuration `text`, the content of the file at
/// `path` (whose directory is where relative `<<include>>`s are looked
/// for, and whose name without extension becomes `[supervisor] name`),
/// and returns the equivalent TOML.
///
/// The output is stable: the same input gives the same text, with the
/// services in the order of the file (depth first), then the groups.
///
/// A supervisor nested in another one becomes a group of its own, next to
/// its parent's group, which keeps only the parent's own services. That
/// is what simplevisor does as long as the parent never restarts the
/// nested supervisor because of a sibling: always with `one_for_one`;
/// with `rest_for_one` when none of the parent's services comes before it;
/// with `one_for_all` when the parent has no services of its own. Other
/// nestings are rejected, since a group cannot hold another group.
/// (simplevisor also restarts a nested supervisor that needed too many
/// adjustments, `window` and `adjustments`, which have no equivalent.)
///
/// # Errors
///
/// Every problem found, each with the file (the main one or an included
/// one), line, entry and key: syntax errors stop the reading at the
/// first; the checks of the entries report all they find.
pub fn to_toml(path: &Path, text: &str) -> Result<String, ConfigErrors> {
    let mut reader = Reader::new(path);
    if let Err(e) = reader.read(0, text, 0) {
        return Err(ConfigErrors(vec![*e]));
    }
    let root = match parse(&reader.files, &reader.lines) {
        Ok(root) => root,
        Err(e) => return Err(ConfigErrors(vec![*e])),
    };
    let mut conv = Converter::new(&reader.files);
    conv.root(path, &root);
    if !conv.errors.is_empty() {
        return Err(ConfigErrors(conv.errors));
    }
    Ok(conv.write(path))
}

// ---------------------------------------------------------------------
// Glue: positions and errors, shared by the reader and the converter.

/// Where a line comes from: the file (an index into the files read), the
/// 1-based line and the 1-based column of its first non-blank character.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pos {
    file: usize,
    line: usize,
    column: usize,
}

/// An error at `at` in one of `files`.
fn error_at(
    files: &[PathBuf],
    at: Pos,
    service: Option<&str>,
    key: Option<&str>,
    message: impl Into<String>,
) -> ConfigError {
    ConfigError {
        path: files[at.file].clone(),
        line: Some(at.line),
        column: Some(at.column),
        service: service.map(str::to_owned),
        key: key.map(str::to_owned),
        message: message.into(),
    }
}

/// `# text`, with the control characters of `text` (but tab) written as
/// escapes (`\n`, `\u{0}`): a TOML comment allows none of them and ends
/// at a newline, so that a value quoted in a note (a here-document, a
/// stray NUL) could otherwise make the file invalid, or add lines of its
/// own to it, such as a `[service.x]` the simplevisor file never defined.
pub(super) fn toml_comment(text: &str) -> String {
    let mut out = String::from("# ");
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A TOML basic string.
pub(super) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
