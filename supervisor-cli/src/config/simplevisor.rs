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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::check::{valid_name, NAME_RULE};
use super::{ConfigError, ConfigErrors};

/// simplevisor's interval between supervision cycles when none is given,
/// in seconds: the `check_interval` of every service.
const DEFAULT_INTERVAL: u64 = 60;
/// The longest duration our configuration accepts, in seconds.
const MAX_SECONDS: u64 = 365 * 24 * 3600;
/// How deep `<<include>>`s may nest.
const MAX_INCLUDE_DEPTH: usize = 32;

/// The keys of the `<simplevisor>` block (besides `var_*` variables).
const GLOBAL_KEYS: &[&str] =
    &["interval", "loglevel", "log", "logfile", "logname", "pidfile", "store", "daemon", "conftype", "command", "path"];
/// The keys of a `type = service` entry (besides `var_*` variables).
const SERVICE_KEYS: &[&str] = &[
    "type", "name", "control", "start", "stop", "status", "restart", "pattern", "daemon", "path", "timeout",
    "expected", "logname",
];
/// The keys of a `type = supervisor` entry (besides `var_*` variables and
/// the `<children>` block).
const SUPERVISOR_KEYS: &[&str] = &["type", "name", "strategy", "expected", "window", "adjustments", "logname"];
/// simplevisor's restart strategies, which are also ours.
const STRATEGIES: &[&str] = &["one_for_one", "one_for_all", "rest_for_one"];

/// Whether `text` is a simplevisor configuration: its first construct,
/// after blank lines and comments, is an `<entry>` or `<simplevisor>`
/// block (in any case) or a `<<include FILE>>`.
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
// Reading: lines, comments, continuations, here-documents, includes.

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

/// One logical line, once comments, continuations, here-documents and
/// includes are dealt with.
#[derive(Debug)]
enum Chunk {
    /// A block start or end, or an option line.
    Text(String),
    /// `KEY <<MARKER` ... `MARKER`: the key and the lines between.
    Heredoc(String, String),
}

#[derive(Debug)]
struct Logical {
    chunk: Chunk,
    at: Pos,
}

/// A here-document being read.
struct OpenHeredoc {
    key: String,
    marker: String,
    at: Pos,
    body: Vec<String>,
}

/// Reads a file and the files it includes into logical lines, as
/// `Config::General`'s `_read` does.
struct Reader {
    /// Every file read, the main one first, as shown in errors.
    files: Vec<PathBuf>,
    /// The directory of the main file: the second place where relative
    /// includes are looked for.
    main_dir: PathBuf,
    lines: Vec<Logical>,
    /// The files being read, outermost first (canonical where possible).
    chain: Vec<PathBuf>,
}

impl Reader {
    fn new(path: &Path) -> Reader {
        Reader {
            files: vec![path.to_path_buf()],
            main_dir: parent_dir(path),
            lines: Vec::new(),
            chain: vec![std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())],
        }
    }

    fn error(&self, at: Pos, message: impl Into<String>) -> Box<ConfigError> {
        Box::new(error_at(&self.files, at, None, None, message))
    }

    /// Reads `text`, the content of file number `file`.
    fn read(&mut self, file: usize, text: &str, depth: usize) -> Result<(), Box<ConfigError>> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut heredoc: Option<OpenHeredoc> = None;
        let mut c_comment = false;
        let mut long: Option<(String, Pos)> = None;
        let mut last = 0;
        for (i, raw) in text.split_inclusive('\n').enumerate() {
            let raw = raw.strip_suffix('\n').unwrap_or(raw);
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let at = Pos { file, line: i + 1, column: column_of(raw) };
            last = i + 1;
            if let Some(h) = &mut heredoc {
                let end = raw.trim_end();
                if end.trim_start() == h.marker {
                    let indent = &end[..end.len() - end.trim_start().len()];
                    let value = if indent.is_empty() {
                        h.body.join("\n")
                    } else {
                        h.body.iter().map(|l| format!("{}\n", l.strip_prefix(indent).unwrap_or(l))).collect()
                    };
                    self.lines.push(Logical { chunk: Chunk::Heredoc(h.key.clone(), value), at: h.at });
                    heredoc = None;
                } else {
                    h.body.push(raw.to_owned());
                }
                continue;
            }

            // C comments, as Config::General sees them.
            let mut line = raw.to_owned();
            if let Some(rest) = strip_c_comment(&line) {
                line = rest;
            } else if line.trim_start().starts_with("/*") {
                c_comment = !line.trim_end().ends_with("*/");
            } else if let Some(end) = line.rfind("*/") {
                if !c_comment {
                    let message = "\"*/\" without a \"/*\" before it: Config::General (which simplevisor uses to \
                                   read its file) refuses it; write the text differently (in a command, \"%2A/\" \
                                   is an escaped \"*/\")";
                    return Err(self.error(at, message));
                }
                c_comment = false;
                line = line[end + 2..].to_owned();
            }
            if c_comment {
                continue;
            }
            if let Some(i) = comment_start(&line) {
                line.truncate(i);
            }

            // A line ending with an unescaped backslash goes on.
            if line.ends_with('\\') && !line.ends_with("\\\\") {
                line.pop();
                let part = line.trim_start();
                match &mut long {
                    Some((text, _)) => text.push_str(part),
                    None => long = Some((part.to_owned(), at)),
                }
                continue;
            }

            // <name/> is an empty block.
            let trimmed = line.trim();
            if trimmed.len() > 3
                && trimmed.starts_with('<')
                && trimmed.ends_with("/>")
                && !trimmed[1..].starts_with('/')
            {
                let inner = trimmed[1..trimmed.len() - 2].trim_end();
                if !inner.starts_with('<') {
                    let name = inner.split_whitespace().next().unwrap_or(inner);
                    self.lines.push(Logical { chunk: Chunk::Text(format!("<{inner}>")), at });
                    self.lines.push(Logical { chunk: Chunk::Text(format!("</{name}>")), at });
                    continue;
                }
            }

            if let Some((key, marker)) = heredoc_start(&line) {
                heredoc = Some(OpenHeredoc { key, marker, at, body: Vec::new() });
                continue;
            }

            if let Some((mut text, start)) = long.take() {
                if !text.is_empty() {
                    text.push_str(line.trim_start());
                    self.lines.push(Logical { chunk: Chunk::Text(text), at: start });
                    continue;
                }
            }
            if line.trim().is_empty() {
                continue;
            }
            if let Some(target) = include_target(&line) {
                self.include(at, target, depth)?;
                continue;
            }
            self.lines.push(Logical { chunk: Chunk::Text(line), at });
        }
        if let Some(h) = heredoc {
            let message = format!("the here-document of {:?} has no end: no line holds only {:?}", h.key, h.marker);
            return Err(error_at(&self.files, h.at, None, Some(&h.key), message).into());
        }
        if let Some((_, at)) = long.filter(|(text, _)| !text.is_empty()) {
            let message = format!("the line goes on (it ends with \"\\\") past the end of the file, at line {last}");
            return Err(self.error(at, message));
        }
        Ok(())
    }

    /// `<<include TARGET>>` at `at`: reads the file, or every file that the
    /// glob matches (in order), where the including file is, or else where
    /// the main file is.
    fn include(&mut self, at: Pos, target: &str, depth: usize) -> Result<(), Box<ConfigError>> {
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(self.error(at, format!("includes nest more than {MAX_INCLUDE_DEPTH} deep")));
        }
        let dir = parent_dir(&self.files[at.file]);
        let rel = Path::new(target);
        let paths = if has_glob(target) {
            let mut found = glob(&dir.join(rel));
            if found.is_empty() && rel.is_relative() {
                found = glob(&self.main_dir.join(rel));
            }
            found
        } else {
            let here = dir.join(rel);
            let there = self.main_dir.join(rel);
            if here.exists() {
                vec![here]
            } else if rel.is_relative() && there.exists() {
                vec![there]
            } else {
                let message = format!("cannot include {target:?}: there is no file {:?}", here.display().to_string());
                return Err(self.error(at, message));
            }
        };
        for path in paths {
            if path.is_dir() {
                let message = format!("cannot include {:?}: it is a directory", path.display().to_string());
                return Err(self.error(at, message));
            }
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if self.chain.contains(&canonical) {
                let message = format!("{:?} includes itself (through the files that include it)", target);
                return Err(self.error(at, message));
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| self.error(at, format!("cannot include {:?}: {e}", path.display().to_string())))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                self.error(at, format!("cannot include {:?}: it is not UTF-8 text", path.display().to_string()))
            })?;
            self.files.push(path);
            self.chain.push(canonical);
            let index = self.files.len() - 1;
            self.read(index, &text, depth + 1)?;
            self.chain.pop();
        }
        Ok(())
    }
}

/// The directory of a file, for relative includes (`""` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The 1-based column (in characters) of the first non-blank character.
fn column_of(line: &str) -> usize {
    line.chars().take_while(|c| c.is_whitespace()).count() + 1
}

/// Removes a C comment that starts and ends on the line, with the blanks
/// around it (Config::General: `s/\s*\/\*.*\*\/\s*//`), if there is one.
fn strip_c_comment(line: &str) -> Option<String> {
    let start = line.find("/*")?;
    let end = start + 2 + line[start + 2..].rfind("*/")? + 2;
    let before = line[..start].trim_end_matches(char::is_whitespace);
    let after = line[end..].trim_start_matches(char::is_whitespace);
    Some(format!("{before}{after}"))
}

/// Where a `#` comment starts: the first `#` not right after a backslash.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1] != b'\\'))
}

/// `KEY = <<MARKER` or `KEY <<MARKER`: the key and the end marker.
fn heredoc_start(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    if let Some(eq) = t.find('=') {
        let key = t[..eq].trim_end();
        if let Some(marker) = t[eq + 1..].trim_start().strip_prefix("<<") {
            let marker = marker.trim();
            if !key.is_empty() && !marker.is_empty() {
                return Some((key.to_owned(), marker.to_owned()));
            }
        }
    }
    let end = t.find(char::is_whitespace)?;
    let marker = t[end..].trim_start().strip_prefix("<<")?.trim();
    if marker.is_empty() {
        return None;
    }
    Some((t[..end].to_owned(), marker.to_owned()))
}

/// `<<include FILE>>` (`include` in any case, the file maybe quoted): the
/// file.
fn include_target(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("<<")?;
    if !rest.get(..7)?.eq_ignore_ascii_case("include") {
        return None;
    }
    let rest = &rest[7..];
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let target = rest.strip_suffix(">>")?.trim();
    let target =
        ['"', '\''].iter().find_map(|q| target.strip_prefix(*q).and_then(|t| t.strip_suffix(*q))).unwrap_or(target);
    (!target.is_empty()).then_some(target)
}

/// Whether an include is a glob (Config::General's `IncludeGlob`).
fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The regular files that a glob matches, sorted, as Perl's `bsd_glob`
/// with `GLOB_BRACE` finds them: `*`, `?`, `[...]` within one name (a
/// leading `.` must be matched explicitly), `{a,b}` alternatives, `\`
/// escapes.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for alternative in expand_braces(&pattern.to_string_lossy()) {
        let mut current = vec![if alternative.starts_with('/') { PathBuf::from("/") } else { PathBuf::new() }];
        for component in alternative.split('/').filter(|c| !c.is_empty()) {
            let mut next = Vec::new();
            for base in &current {
                if !has_glob(component) {
                    next.push(base.join(unescape_glob(component)));
                    continue;
                }
                let dir = if base.as_os_str().is_empty() { Path::new(".") } else { base.as_path() };
                let Ok(entries) = std::fs::read_dir(dir) else { continue };
                let pattern: Vec<char> = component.chars().collect();
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let chars: Vec<char> = name.chars().collect();
                    if (!name.starts_with('.') || component.starts_with('.')) && wildcard(&pattern, &chars) {
                        next.push(base.join(name));
                    }
                }
            }
            current = next;
        }
        out.extend(current.into_iter().filter(|p| p.is_file()));
    }
    out.sort();
    out.dedup();
    out
}

/// `{a,b}` alternatives, expanded (`{}` and unbalanced braces are kept).
fn expand_braces(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '{' => {
                let (mut level, mut j, mut commas) = (0, i, Vec::new());
                while j < chars.len() {
                    match chars[j] {
                        '\\' => j += 1,
                        '{' => level += 1,
                        '}' => {
                            level -= 1;
                            if level == 0 {
                                break;
                            }
                        }
                        ',' if level == 1 => commas.push(j),
                        _ => {}
                    }
                    j += 1;
                }
                if j >= chars.len() || j == i + 1 {
                    i += 1;
                    continue;
                }
                let prefix: String = chars[..i].iter().collect();
                let suffix: String = chars[j + 1..].iter().collect();
                let mut bounds = vec![i];
                bounds.extend(commas);
                bounds.push(j);
                let mut out = Vec::new();
                for w in bounds.windows(2) {
                    let middle: String = chars[w[0] + 1..w[1]].iter().collect();
                    out.extend(expand_braces(&format!("{prefix}{middle}{suffix}")));
                }
                return out;
            }
            _ => i += 1,
        }
    }
    vec![s.to_owned()]
}

/// A glob component without its backslash escapes.
fn unescape_glob(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
    }
    out
}

/// Whether `name` matches the glob `pattern` (one path component).
fn wildcard(pattern: &[char], name: &[char]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some('*') => (0..=name.len()).any(|i| wildcard(&pattern[1..], &name[i..])),
        Some('?') => !name.is_empty() && wildcard(&pattern[1..], &name[1..]),
        Some('[') => match (char_class(pattern), name.first()) {
            (Some((set, rest)), Some(&c)) => set(c) && wildcard(rest, &name[1..]),
            (Some(_), None) => false,
            (None, Some(&c)) => c == '[' && wildcard(&pattern[1..], &name[1..]),
            (None, None) => false,
        },
        Some('\\') if pattern.len() > 1 => name.first() == Some(&pattern[1]) && wildcard(&pattern[2..], &name[1..]),
        Some(c) => name.first() == Some(c) && wildcard(&pattern[1..], &name[1..]),
    }
}

/// A `[...]` class at the start of `pattern`: its test and the rest of the
/// pattern, or `None` when it is not closed.
#[allow(clippy::type_complexity)]
fn char_class(pattern: &[char]) -> Option<(Box<dyn Fn(char) -> bool + '_>, &[char])> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let start = i;
    let mut ranges = Vec::new();
    while i < pattern.len() {
        if pattern[i] == ']' && i > start {
            let rest = &pattern[i + 1..];
            return Some((Box::new(move |c| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != negate), rest));
        }
        let lo = pattern[i];
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&c| c != ']') {
            ranges.push((lo, pattern[i + 2]));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
    None
}

// ---------------------------------------------------------------------
// Parsing: blocks, options, quotes, variables and escapes.

/// An option line: `key = value`, `key value` or `key`.
#[derive(Debug)]
struct Opt {
    key: String,
    /// `None` for a key alone on its line.
    value: Option<String>,
    at: Pos,
}

/// A `<name>` ... `</name>` block, or the whole file.
#[derive(Debug)]
struct Block {
    name: String,
    at: Pos,
    opts: Vec<Opt>,
    blocks: Vec<Block>,
}

/// Builds the block tree, as Config::General's `_parse` does: values lose
/// their enclosing double quotes, variables are interpolated (each block
/// sees the options before it in its own and enclosing blocks), then
/// `\$`, `\#`, `\"` and `\\` become `$`, `#`, `"` and `\`.
fn parse(files: &[PathBuf], lines: &[Logical]) -> Result<Block, Box<ConfigError>> {
    let top = Pos { file: 0, line: 1, column: 1 };
    let mut stack: Vec<(Block, HashMap<String, String>)> =
        vec![(Block { name: String::new(), at: top, opts: Vec::new(), blocks: Vec::new() }, HashMap::new())];
    for l in lines {
        let at = l.at;
        let (key, value) = match &l.chunk {
            Chunk::Heredoc(key, value) => (key.trim().to_owned(), Some(value.trim().to_owned())),
            Chunk::Text(text) => {
                let t = text.trim();
                if t.len() >= 4 && t.starts_with("</") && t.ends_with('>') {
                    let name = t[2..t.len() - 1].trim();
                    if stack.len() == 1 {
                        let message = format!("\"{t}\" ends a block that was not started");
                        return Err(error_at(files, at, None, None, message).into());
                    }
                    let (block, _) = stack.pop().expect("an open block");
                    if name != block.name {
                        let message = format!(
                            "\"{t}\" does not end the block <{}> started at line {}{}",
                            block.name,
                            block.at.line,
                            if block.at.file == at.file {
                                String::new()
                            } else {
                                format!(" of {}", files[block.at.file].display())
                            }
                        );
                        return Err(error_at(files, at, None, None, message).into());
                    }
                    stack.last_mut().expect("the file").0.blocks.push(block);
                    continue;
                }
                if t.len() >= 3 && t.starts_with('<') && t.ends_with('>') && !t[1..].starts_with('/') {
                    let inner = t[1..t.len() - 1].trim();
                    let name = match inner.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                        Some(quoted) if !quoted.contains('"') => quoted,
                        _ if inner.contains(char::is_whitespace) || inner.is_empty() => {
                            let message = format!(
                                "\"{t}\" is a named block, which simplevisor does not use: its blocks are \
                                 <simplevisor>, <entry> and <children>"
                            );
                            return Err(error_at(files, at, None, None, message).into());
                        }
                        _ => inner,
                    };
                    let vars = stack.last().expect("the file").1.clone();
                    stack.push((Block { name: name.to_owned(), at, opts: Vec::new(), blocks: Vec::new() }, vars));
                    continue;
                }
                split_option(t)
            }
        };
        if key.is_empty() {
            return Err(error_at(files, at, None, None, "a line without a key (it starts with \"=\")").into());
        }
        let (block, vars) = stack.last_mut().expect("the file");
        let value = match value {
            None => None,
            Some(v) => {
                let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(&v);
                let v = interpolate(v, vars).map_err(|name| {
                    let message = format!(
                        "${name} is not defined: a variable must be set before this line, in this block or an \
                         enclosing one (write \\$ for a literal dollar sign)"
                    );
                    error_at(files, at, None, Some(&key), message)
                })?;
                Some(unescape(&v))
            }
        };
        if let Some(v) = &value {
            vars.entry(key.clone()).or_insert_with(|| v.clone());
        }
        block.opts.push(Opt { key, value, at });
    }
    if stack.len() > 1 {
        let (block, _) = stack.pop().expect("an open block");
        let message = format!("the block <{}> has no end (</{}>)", block.name, block.name);
        return Err(error_at(files, block.at, None, None, message).into());
    }
    Ok(stack.pop().expect("the file").0)
}

/// Splits an option line as Config::General does (`split /\s*=\s*|\s+/,
/// $_, 2`): the key runs to the first blank or `=`.
fn split_option(t: &str) -> (String, Option<String>) {
    let Some(end) = t.find(|c: char| c.is_whitespace() || c == '=') else {
        return (t.to_owned(), None);
    };
    let rest = t[end..].trim_start();
    let value = match rest.strip_prefix('=') {
        Some(v) => v.trim_start(),
        None => rest,
    };
    (t[..end].to_owned(), Some(value.to_owned()))
}

/// Replaces `$name` and `${name}` (not after a backslash, not inside
/// single quotes) by the variable's value; `Err(name)` for an undefined
/// one.
fn interpolate(value: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let chars: Vec<char> = value.chars().collect();
    let is_name = |c: char| c.is_ascii_alphanumeric() || "_-.:+,".contains(c);
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if let Some(len) = chars[i + 1..].iter().position(|&q| q == '\'').filter(|&len| len > 0) {
                out.extend(&chars[i..i + len + 2]);
                i += len + 2;
                continue;
            }
        }
        if c == '$' && (i == 0 || chars[i - 1] != '\\') {
            let braced = chars.get(i + 1) == Some(&'{');
            let start = i + 1 + usize::from(braced);
            let len = chars[start..].iter().take_while(|&&c| is_name(c)).count();
            let closed = !braced || chars.get(start + len) == Some(&'}');
            if len > 0 && closed {
                let name: String = chars[start..start + len].iter().collect();
                out.push_str(vars.get(&name).ok_or(name)?);
                i = start + len + usize::from(braced);
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    Ok(out)
}

/// `\$`, `\#`, `\"` and `\\` become `$`, `#`, `"` and `\`.
fn unescape(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if matches!(next, '$' | '\\' | '"' | '#') {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------
// Converting: simplevisor's entries to our services and groups.

/// A command as simplevisor runs it: split on whitespace, every word
/// `%XX`-unquoted (Python's `urllib.unquote`).
fn words(value: &str) -> Vec<String> {
    value
        .split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .filter(|w| !w.is_empty())
        .map(unquote)
        .collect()
}

/// `%XX` (two hex digits) becomes the byte XX; the bytes are read as
/// UTF-8, as Python 3's `urllib.parse.unquote` does.
fn unquote(word: &str) -> String {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A value of a converted service.
enum Value {
    Bool(bool),
    Str(String),
    Words(Vec<String>),
}

/// A `type = service` entry, converted.
struct Service {
    name: String,
    at: Pos,
    values: Vec<(&'static str, Value)>,
    notes: Vec<String>,
}

/// A `type = supervisor` entry, converted.
struct Group {
    name: String,
    at: Pos,
    services: Vec<String>,
    strategy: String,
    notes: Vec<String>,
}

/// What an entry became, for its parent.
enum Child {
    Service,
    Supervisor(String),
}

/// The `<simplevisor>` options that have a place in our TOML, and notes
/// for those that do not.
#[derive(Default)]
struct Globals {
    interval: Option<u64>,
    log_level: Option<&'static str>,
    notes: Vec<String>,
}

struct Converter<'f> {
    files: &'f [PathBuf],
    errors: Vec<ConfigError>,
    globals: Globals,
    services: Vec<Service>,
    groups: Vec<Group>,
}

/// The options of one block, checked: known keys, each once, with a value.
type Fields<'b> = HashMap<&'b str, (&'b str, Pos)>;

impl<'f> Converter<'f> {
    fn new(files: &'f [PathBuf]) -> Self {
        Converter { files, errors: Vec::new(), globals: Globals::default(), services: Vec::new(), groups: Vec::new() }
    }

    fn error(&mut self, at: Pos, service: Option<&str>, key: Option<&str>, message: impl Into<String>) {
        let e = error_at(self.files, at, service, key, message);
        self.errors.push(e);
    }

    /// The file as a whole: `var_*` variables, one optional `<simplevisor>`
    /// block and `<entry>` blocks.
    fn root(&mut self, path: &Path, root: &Block) {
        for opt in root.opts.iter().filter(|o| !o.key.starts_with("var_")) {
            let message = "unknown key outside any block: a simplevisor file holds a <simplevisor> block, <entry> \
                           blocks and var_* variables";
            self.error(opt.at, None, Some(&opt.key), message);
        }
        let mut globals: Option<&Block> = None;
        let mut entries = Vec::new();
        for b in &root.blocks {
            match b.name.as_str() {
                "simplevisor" => match globals {
                    Some(first) => {
                        let message = format!("a second <simplevisor> block (the first is at line {})", first.at.line);
                        self.error(b.at, None, Some("<simplevisor>"), message);
                    }
                    None => globals = Some(b),
                },
                "entry" => entries.push(b),
                other => {
                    let message = format!(
                        "unknown block <{other}>: the blocks of a simplevisor file are <simplevisor> and <entry>"
                    );
                    self.error(b.at, None, Some(&format!("<{other}>")), message);
                }
            }
        }
        if let Some(g) = globals {
            self.globals(g);
        }
        if entries.is_empty() {
            let at = Pos { file: 0, line: 1, column: 1 };
            self.error(at, None, None, "no <entry> block: there is nothing to supervise");
        }
        for e in entries {
            self.entry(e, None);
        }
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if !valid_name(&stem) {
            let message = format!(
                "the supervisor's name is the file's name without its extension, {stem:?}, which is not a valid \
                 name ({NAME_RULE}): rename the file"
            );
            self.errors.push(ConfigError::new(path, message));
        }
        self.errors.sort_by_key(|e| (e.path != self.files[0], e.path.clone(), e.line, e.column));
    }

    /// Checks the options of `block` against `known`: an unknown key (other
    /// than `var_*`), a repeated key or a key without a value is an error.
    fn fields<'b>(&mut self, block: &'b Block, known: &[&str], what: &str, service: Option<&str>) -> Fields<'b> {
        let mut fields = Fields::new();
        for opt in &block.opts {
            let key = opt.key.as_str();
            if key.starts_with("var_") {
                continue;
            }
            if !known.contains(&key) {
                let message =
                    format!("unknown key; the keys of {what} are: {} (and var_* variables)", known.join(", "));
                self.error(opt.at, service, Some(key), message);
                continue;
            }
            let Some(value) = opt.value.as_deref().filter(|v| !v.trim().is_empty()) else {
                self.error(opt.at, service, Some(key), "the key has no value");
                continue;
            };
            if let Some((_, first)) = fields.get(key) {
                let message = format!("the key is given twice (first at line {})", first.line);
                self.error(opt.at, service, Some(key), message);
                continue;
            }
            fields.insert(key, (value, opt.at));
        }
        fields
    }

    /// A whole number of seconds, at least 1, as simplevisor's `int()`
    /// reads it.
    fn seconds(&mut self, (value, at): (&str, Pos), service: Option<&str>, key: &str) -> Option<u64> {
        match parse_int(value) {
            Some(n) if (1..=MAX_SECONDS as i128).contains(&n) => Some(n as u64),
            _ => {
                let message = format!("expected a whole number of seconds from 1 to {MAX_SECONDS}, found {value:?}");
                self.error(at, service, Some(key), message);
                None
            }
        }
    }

    /// The `<simplevisor>` block.
    fn globals(&mut self, block: &Block) {
        for b in &block.blocks {
            let message = "<simplevisor> holds options only, no blocks";
            self.error(b.at, None, Some(&format!("<{}>", b.name)), message);
        }
        let f = self.fields(block, GLOBAL_KEYS, "<simplevisor>", None);
        let mut notes = Vec::new();
        if let Some(&v) = f.get("interval") {
            self.globals.interval = self.seconds(v, None, "interval");
        }
        if let Some(&(value, at)) = f.get("loglevel") {
            let level = match value.to_ascii_lowercase().as_str() {
                "debug" => Some("debug"),
                "info" => Some("info"),
                "warning" | "warn" => Some("warning"),
                "error" => Some("error"),
                "critical" => {
                    notes.push("simplevisor loglevel = critical: the closest level is error".to_owned());
                    Some("error")
                }
                _ => {
                    let message = format!("expected one of debug, info, warning, error, critical, found {value:?}");
                    self.error(at, None, Some("loglevel"), message);
                    None
                }
            };
            self.globals.log_level = level;
        }
        if let Some(&(value, at)) = f.get("conftype") {
            if value != "apache" {
                let message = format!(
                    "only the \"apache\" format (this one) can be read, found {value:?}; use `supervisor convert` \
                     on the simplevisor file in the Apache format"
                );
                self.error(at, None, Some("conftype"), message);
            }
        }
        for key in ["command", "path"] {
            if let Some(&(_, at)) = f.get(key) {
                let message = format!(
                    "{key} is an argument of the simplevisor command, not a setting: give the command to \
                     `supervisor` (see docs/migrating.md)"
                );
                self.error(at, None, Some(key), message);
            }
        }
        let unmapped = [
            ("pidfile", "the supervisor's pidfile is RUNTIME_DIR/run/supervisor.pid"),
            ("store", "the services' states are kept in RUNTIME_DIR/run/state.json"),
            ("log", "the supervisor logs to RUNTIME_DIR/log/supervisor.log (and to stderr under `supervisor run`)"),
            ("logfile", "the supervisor's log is RUNTIME_DIR/log/supervisor.log"),
            ("logname", "log lines are tagged with the supervisor's and the services' names"),
            ("daemon", "`supervisor up` detaches, `supervisor run` stays in the foreground"),
        ];
        for (key, instead) in unmapped {
            if let Some(&(value, _)) = f.get(key) {
                notes.push(format!("simplevisor {key} = {value}: not used; {instead}"));
            }
        }
        self.globals.notes = notes;
    }

    /// An `<entry>` block; `forced` is the `expected` that an enclosing
    /// supervisor imposes on it.
    fn entry(&mut self, block: &Block, forced: Option<&str>) -> Option<Child> {
        let typ = block.opts.iter().find(|o| o.key == "type").and_then(|o| o.value.as_deref());
        let name = block.opts.iter().find(|o| o.key == "name").and_then(|o| o.value.as_deref());
        match typ {
            Some("service") => self.service(block, forced),
            Some("supervisor") => self.supervisor(block, forced),
            Some(other) => {
                let at = block.opts.iter().find(|o| o.key == "type").map_or(block.at, |o| o.at);
                let message = format!("expected \"service\" or \"supervisor\", found {other:?}");
                self.error(at, name, Some("type"), message);
                None
            }
            None => {
                self.error(
                    block.at,
                    name,
                    Some("type"),
                    "the entry has no type: add type = service or type = supervisor",
                );
                None
            }
        }
    }

    /// A `type = service` entry: `[service.NAME]`.
    fn service(&mut self, block: &Block, forced: Option<&str>) -> Option<Child> {
        let name = block.opts.iter().find(|o| o.key == "name").and_then(|o| o.value.clone());
        let label = name.as_deref();
        for b in &block.blocks {
            let message = "a service entry holds options only, no blocks";
            self.error(b.at, label, Some(&format!("<{}>", b.name)), message);
        }
        let f = self.fields(block, SERVICE_KEYS, "a service entry", label);
        let Some(&(name, name_at)) = f.get("name") else {
            if !block.opts.iter().any(|o| o.key == "name") {
                self.error(block.at, None, Some("name"), "the service entry has no name");
            }
            return None;
        };
        let ok_name = self.check_name(name, name_at, "service");
        let mut values: Vec<(&'static str, Value)> = vec![("kind", Value::Str("external".to_owned()))];
        for key in ["control", "start", "stop", "status", "restart"] {
            let Some(&(value, _)) = f.get(key) else { continue };
            if key == "restart" && value == "stop+start" {
                values.push((key, Value::Str(value.to_owned())));
            } else {
                values.push((key, Value::Words(words(value))));
            }
        }
        for key in ["pattern", "daemon", "path"] {
            if let Some(&(value, _)) = f.get(key) {
                values.push((key, Value::Str(value.to_owned())));
            }
        }
        if f.contains_key("path") {
            // simplevisor runs the commands with PATH as their only
            // environment variable when path is set.
            values.push(("clear_env", Value::Bool(true)));
        }
        if let Some(&v) = f.get("timeout") {
            if let Some(n) = self.seconds(v, Some(name), "timeout") {
                values.push(("timeout", Value::Str(format!("{n}s"))));
            }
        }
        let own = match f.get("expected") {
            Some(&(value, at)) if value != "running" && value != "stopped" => {
                let message = format!("expected \"running\" or \"stopped\", found {value:?}");
                self.error(at, Some(name), Some("expected"), message);
                None
            }
            Some(&(value, _)) => Some(value),
            None => None,
        };
        if let Some(expected) = forced.or(own) {
            values.push(("expected", Value::Str(expected.to_owned())));
        }
        let interval = self.globals.interval.unwrap_or(DEFAULT_INTERVAL);
        values.push(("check_interval", Value::Str(format!("{interval}s"))));
        let mut notes = Vec::new();
        if let (Some(forced), Some(own)) = (forced, own) {
            if forced != own {
                notes
                    .push(format!("expected = {own} in the entry; an enclosing supervisor's expected = {forced} wins"));
            }
        }
        if let Some(&(value, _)) = f.get("logname") {
            notes.push(format!("simplevisor logname = {value}: not used; log lines carry the service's name"));
        }
        if !f.contains_key("start") && !f.contains_key("control") {
            self.error(block.at, Some(name), None, "the service entry needs start or control");
            return None;
        }
        for (key, value) in &values {
            if let Value::Words(w) = value {
                if w.iter().any(|w| w.contains('\0')) {
                    let at = f.get(key).map_or(block.at, |v| v.1);
                    self.error(at, Some(name), Some(key), "a word of the command holds %00, a NUL byte");
                }
            }
        }
        if ok_name {
            self.services.push(Service { name: name.to_owned(), at: block.at, values, notes });
        }
        Some(Child::Service)
    }

    /// Whether `name` can name a `kind` ("service" or "group"), and is the
    /// first of its kind with that name; reports it when not.
    fn check_name(&mut self, name: &str, at: Pos, kind: &str) -> bool {
        let (service, label) = if kind == "service" { (Some(name), "service") } else { (None, "supervisor") };
        if !valid_name(name) {
            let message = format!("{name:?} cannot be a {label} name: use {NAME_RULE}");
            self.error(at, service, Some("name"), message);
            return false;
        }
        let first = if kind == "service" {
            self.services.iter().find(|s| s.name == name).map(|s| s.at)
        } else {
            self.groups.iter().find(|g| g.name == name).map(|g| g.at)
        };
        if let Some(first) = first {
            let message = format!(
                "a second {label} named {name:?} (the first is at {}:{}): the converted services and groups \
                 share one namespace each, whatever supervisor they were in",
                self.files[first.file].display(),
                first.line
            );
            self.error(at, service, Some("name"), message);
            return false;
        }
        true
    }

    /// A `type = supervisor` entry: `[group.NAME]`, and its children.
    fn supervisor(&mut self, block: &Block, forced: Option<&str>) -> Option<Child> {
        let f = self.fields(block, SUPERVISOR_KEYS, "a supervisor entry", None);
        let (name, name_at) = f.get("name").copied().unwrap_or(("supervisor", block.at));
        let label = format!("supervisor {name:?}: ");
        let strategy = match f.get("strategy") {
            Some(&(value, at)) if !STRATEGIES.contains(&value) => {
                let message = format!("{label}expected one of {}, found {value:?}", STRATEGIES.join(", "));
                self.error(at, None, Some("strategy"), message);
                "one_for_one"
            }
            Some(&(value, _)) => value,
            None => "one_for_one",
        };
        let own = match f.get("expected") {
            Some(&(value, at)) => {
                let lower = value.to_ascii_lowercase();
                match ["none", "running", "stopped"].into_iter().find(|v| *v == lower) {
                    Some(v) => v,
                    None => {
                        let message = format!("{label}expected \"none\", \"running\" or \"stopped\", found {value:?}");
                        self.error(at, None, Some("expected"), message);
                        "none"
                    }
                }
            }
            None => "none",
        };
        let mut notes = Vec::new();
        for key in ["window", "adjustments"] {
            if let Some(&(value, at)) = f.get(key) {
                if parse_int(value).is_none() {
                    let message = format!("{label}expected a whole number, found {value:?}");
                    self.error(at, None, Some(key), message);
                }
            }
        }
        if f.contains_key("window") || f.contains_key("adjustments") {
            let show = |key: &str, default: &str| f.get(key).map_or(default.to_owned(), |v| v.0.to_owned());
            notes.push(format!(
                "simplevisor window = {}, adjustments = {}: a supervisor that needed adjustments in more than \
                 {} of its last {} cycles stopped its children and was restarted; not mapped",
                show("window", "12"),
                show("adjustments", "3"),
                show("adjustments", "3"),
                show("window", "12")
            ));
        }
        if let Some(&(value, _)) = f.get("logname") {
            notes.push(format!("simplevisor logname = {value}: not used"));
        }
        let ok_name = self.check_name(name, name_at, "group");
        let index = self.groups.len();
        if ok_name {
            let group = Group {
                name: name.to_owned(),
                at: block.at,
                services: Vec::new(),
                strategy: strategy.to_owned(),
                notes,
            };
            self.groups.push(group);
        }

        let mut children: Option<&Block> = None;
        for b in &block.blocks {
            match (b.name.as_str(), children) {
                ("children", None) => children = Some(b),
                ("children", Some(first)) => {
                    let message = format!("{label}a second <children> block (the first is at line {})", first.at.line);
                    self.error(b.at, None, Some("<children>"), message);
                }
                (other, _) => {
                    let message =
                        format!("{label}unknown block <{other}>: a supervisor entry holds one <children> block");
                    self.error(b.at, None, Some(&format!("<{other}>")), message);
                }
            }
        }
        let entries: Vec<&Block> = match children {
            Some(c) => {
                for opt in c.opts.iter().filter(|o| !o.key.starts_with("var_")) {
                    let message = format!("{label}<children> holds <entry> blocks (and var_* variables) only");
                    self.error(opt.at, None, Some(&opt.key), message);
                }
                for b in c.blocks.iter().filter(|b| b.name != "entry") {
                    let message = format!("{label}unknown block <{}>: <children> holds <entry> blocks", b.name);
                    self.error(b.at, None, Some(&format!("<{}>", b.name)), message);
                }
                c.blocks.iter().filter(|b| b.name == "entry").collect()
            }
            None => Vec::new(),
        };
        if entries.is_empty() {
            let message = format!("{label}a supervisor needs at least one child: add <children> with <entry> blocks");
            self.error(block.at, None, Some("<children>"), message);
        }

        let inherited = forced.or((own != "none").then_some(own));
        let mut services = Vec::new();
        let mut first_service: Option<usize> = None;
        let mut nested: Vec<(usize, String, Pos)> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let service_name = entry.opts.iter().find(|o| o.key == "name").and_then(|o| o.value.clone());
            match self.entry(entry, inherited) {
                Some(Child::Service) => {
                    first_service.get_or_insert(i);
                    services.extend(service_name);
                }
                Some(Child::Supervisor(n)) => nested.push((i, n, entry.at)),
                None => {}
            }
        }
        for (i, child, at) in nested {
            let restarted_by_sibling = match strategy {
                "one_for_all" => first_service.is_some(),
                "rest_for_one" => first_service.is_some_and(|s| s < i),
                _ => false,
            };
            if restarted_by_sibling {
                let message = format!(
                    "{label}the nested supervisor {child:?} cannot be converted: with strategy = {strategy}, {name:?} \
                     restarts {child:?}'s services when one of its own services fails, and a group cannot hold \
                     another group; use strategy = one_for_one in {name:?}, put {child:?} before {name:?}'s \
                     services with rest_for_one, or move the services into one supervisor"
                );
                self.error(at, None, Some("type"), message);
            }
        }
        if ok_name {
            let group = &mut self.groups[index];
            group.services = services;
        }
        Some(Child::Supervisor(name.to_owned()))
    }

    /// The TOML text.
    fn write(&self, path: &Path) -> String {
        let mut out = String::from("[supervisor]\n");
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = writeln!(out, "name = {}", toml_string(&stem));
        if let Some(level) = self.globals.log_level {
            let _ = writeln!(out, "log_level = {}", toml_string(level));
        }
        for note in &self.globals.notes {
            let _ = writeln!(out, "# {note}");
        }
        for s in &self.services {
            let _ = writeln!(out, "\n# {}:{}", self.files[s.at.file].display(), s.at.line);
            let _ = writeln!(out, "[service.{}]", toml_key(&s.name));
            for (key, value) in &s.values {
                let value = match value {
                    Value::Bool(b) => b.to_string(),
                    Value::Str(v) => toml_string(v),
                    Value::Words(w) => {
                        let items: Vec<String> = w.iter().map(|w| toml_string(w)).collect();
                        format!("[{}]", items.join(", "))
                    }
                };
                let _ = writeln!(out, "{key} = {value}");
            }
            for note in &s.notes {
                let _ = writeln!(out, "# {note}");
            }
        }
        for g in &self.groups {
            let _ = writeln!(out, "\n# {}:{}", self.files[g.at.file].display(), g.at.line);
            if g.services.is_empty() {
                let _ = writeln!(
                    out,
                    "# supervisor {:?} has no services of its own: its nested supervisors are groups of their own",
                    g.name
                );
                for note in &g.notes {
                    let _ = writeln!(out, "# {note}");
                }
                continue;
            }
            let _ = writeln!(out, "[group.{}]", toml_key(&g.name));
            let items: Vec<String> = g.services.iter().map(|s| toml_string(s)).collect();
            let _ = writeln!(out, "services = [{}]", items.join(", "));
            let _ = writeln!(out, "strategy = {}", toml_string(&g.strategy));
            for note in &g.notes {
                let _ = writeln!(out, "# {note}");
            }
        }
        out
    }
}

/// An integer as Python's `int()` reads a string: blanks around, an
/// optional sign, digits (and `_` between digits).
fn parse_int(s: &str) -> Option<i128> {
    let s = s.trim();
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let n: i128 = digits.chars().filter(|&c| c != '_').collect::<String>().parse().ok()?;
    Some(if negative { -n } else { n })
}

/// A TOML key: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_owned()
    } else {
        toml_string(key)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The TOML for `text`, checked: valid TOML, and a valid configuration.
    fn convert(text: &str) -> String {
        let path = Path::new("/etc/simplevisor/demo.conf");
        match to_toml(path, text) {
            Ok(toml) => {
                toml::from_str::<toml::Table>(&toml).unwrap_or_else(|e| panic!("invalid TOML: {e}\n{toml}"));
                crate::config::Config::parse(path, &toml)
                    .unwrap_or_else(|e| panic!("invalid configuration: {e}\n{toml}"));
                toml
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match to_toml(Path::new("/etc/simplevisor/demo.conf"), text) {
            Ok(toml) => panic!("no error:\n{toml}"),
            Err(e) => e.0,
        }
    }

    fn table(toml: &str) -> toml::Table {
        toml::from_str(toml).expect("valid TOML")
    }

    /// The seed's first example, as written.
    const HTTPD: &str = "<entry>
    type = service
    name = httpd
    expected = stopped
    control = /sbin/service httpd
</entry>
";

    /// The seed's second example, as written.
    const CUSTOM1: &str = "<entry>
    type = service
    name = custom1
    start = /path/to/script --conf /path/to/conf --daemon
    # If you cannot provide a status or stop command you can specify a
    # pattern which will be used to look for the process in the process
    # table, however this is supported only on Linux.
    # If not specified start command is used as pattern.
    pattern = /path/to/script --conf /path/to/conf --daemon
</entry>
";

    #[test]
    fn the_seeds_first_example() {
        assert!(looks_like(HTTPD));
        let toml = convert(HTTPD);
        assert_eq!(
            toml,
            "[supervisor]
name = \"demo\"

# /etc/simplevisor/demo.conf:1
[service.httpd]
kind = \"external\"
control = [\"/sbin/service\", \"httpd\"]
expected = \"stopped\"
check_interval = \"60s\"
"
        );
    }

    #[test]
    fn the_seeds_second_example() {
        let t = table(&convert(CUSTOM1));
        let s = &t["service"]["custom1"];
        assert_eq!(s["kind"].as_str(), Some("external"));
        let start: Vec<&str> = s["start"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(start, ["/path/to/script", "--conf", "/path/to/conf", "--daemon"]);
        assert_eq!(s["pattern"].as_str(), Some("/path/to/script --conf /path/to/conf --daemon"));
        assert!(s.get("expected").is_none());
        assert!(s.get("stop").is_none() && s.get("status").is_none());
    }

    #[test]
    fn both_examples_in_one_file_and_the_quoting_example() {
        let text = format!(
            "{HTTPD}{CUSTOM1}<entry>\n    type = service\n    name = spaced\n    \
             start = /path/to/script --conf /path/to/conf --space hello%20world start\n</entry>\n"
        );
        let t = table(&convert(&text));
        let names: Vec<&String> = t["service"].as_table().unwrap().keys().collect();
        assert_eq!(names.len(), 3);
        let start: Vec<&str> =
            t["service"]["spaced"]["start"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(start, ["/path/to/script", "--conf", "/path/to/conf", "--space", "hello world", "start"]);
    }

    #[test]
    fn the_output_loads_as_our_configuration() {
        let text = format!(
            "<simplevisor>\n    interval = 20\n    loglevel = debug\n</simplevisor>\n<entry>\n    type = supervisor\n    \
             name = svisor1\n    strategy = one_for_all\n    <children>\n{HTTPD}{CUSTOM1}    </children>\n</entry>\n"
        );
        let path = Path::new("/etc/simplevisor/demo.conf");
        let toml = convert(&text);
        let config = crate::config::Config::parse(path, &toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        assert_eq!(config.name, "demo");
        assert_eq!(config.log_level, log::LevelFilter::Debug);
        let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["httpd", "custom1"]);
        for svc in &config.services {
            assert!(matches!(svc.kind, supervisor_core::Kind::External(_)), "{svc:?}");
        }
    }

    #[test]
    fn unquoting_is_pythons() {
        assert_eq!(unquote("hello%20world"), "hello world");
        assert_eq!(unquote("100%"), "100%");
        assert_eq!(unquote("%zz%4"), "%zz%4");
        assert_eq!(unquote("a+b%2Bc"), "a+b+c");
        assert_eq!(unquote("%C3%A9"), "é");
        assert_eq!(words("  a\tb%20c \n d "), ["a", "b c", "d"]);
    }

    #[test]
    fn every_service_key() {
        let text = "<simplevisor>
    interval = 15
    loglevel = INFO
    pidfile = /var/run/simplevisor.pid
</simplevisor>
<entry>
    type = service
    name = web.1
    start = /usr/bin/web -c a%22b
    stop = /usr/bin/web -k
    status = /usr/bin/web -s
    restart = stop+start
    daemon = /run/web.pid
    path = /usr/bin:/bin
    timeout = 5
    expected = running
    logname = weblog
</entry>
";
        let toml = convert(text);
        let t = table(&toml);
        assert_eq!(t["supervisor"]["log_level"].as_str(), Some("info"));
        assert!(toml.contains("# simplevisor pidfile = /var/run/simplevisor.pid: not used"), "{toml}");
        let s = &t["service"]["web.1"];
        assert!(toml.contains("[service.\"web.1\"]"), "{toml}");
        assert_eq!(s["start"].as_array().unwrap()[2].as_str(), Some("a\"b"));
        assert_eq!(s["restart"].as_str(), Some("stop+start"));
        assert_eq!(s["daemon"].as_str(), Some("/run/web.pid"));
        assert_eq!(s["path"].as_str(), Some("/usr/bin:/bin"));
        assert_eq!(s["clear_env"].as_bool(), Some(true));
        assert_eq!(s["timeout"].as_str(), Some("5s"));
        assert_eq!(s["expected"].as_str(), Some("running"));
        assert_eq!(s["check_interval"].as_str(), Some("15s"));
        assert!(toml.contains("# simplevisor logname = weblog"), "{toml}");
        assert!(s["stop"].is_array() && s["status"].is_array());
    }

    #[test]
    fn a_supervisor_with_children_and_a_strategy() {
        let text = format!(
            "<entry>
    type = supervisor
    name = svisor1
    window = 10
    adjustments = 2
    strategy = rest_for_one
    <children>
{HTTPD}{CUSTOM1}    </children>
</entry>
"
        );
        let toml = convert(&text);
        let t = table(&toml);
        let g = &t["group"]["svisor1"];
        let services: Vec<&str> = g["services"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(services, ["httpd", "custom1"]);
        assert_eq!(g["strategy"].as_str(), Some("rest_for_one"));
        assert!(toml.contains("# simplevisor window = 10, adjustments = 2"), "{toml}");
        // Services come first, in the order of the file.
        assert!(toml.find("[service.httpd]") < toml.find("[service.custom1]"));
        assert!(toml.find("[service.custom1]") < toml.find("[group.svisor1]"));
    }

    #[test]
    fn a_supervisors_expected_wins_over_its_childrens() {
        let text = "<entry>
    type = supervisor
    name = all
    expected = Stopped
    <children>
        <entry>
            type = service
            name = a
            start = /bin/a
            expected = running
        </entry>
    </children>
</entry>
";
        let t = table(&convert(text));
        assert_eq!(t["service"]["a"]["expected"].as_str(), Some("stopped"));
        assert_eq!(t["group"]["all"]["strategy"].as_str(), Some("one_for_one"));
    }

    const NESTED: &str = "<entry>
    type = supervisor
    name = outer
    strategy = STRATEGY
    <children>
        <entry>
            type = supervisor
            name = inner
            strategy = one_for_all
            <children>
                <entry>
                    type = service
                    name = a
                    start = /bin/a
                </entry>
                <entry>
                    type = service
                    name = b
                    start = /bin/b
                </entry>
            </children>
        </entry>
        <entry>
            type = service
            name = c
            start = /bin/c
        </entry>
    </children>
</entry>
";

    #[test]
    fn nested_supervisors_are_flattened_when_that_keeps_their_meaning() {
        for strategy in ["one_for_one", "rest_for_one"] {
            let t = table(&convert(&NESTED.replace("STRATEGY", strategy)));
            let groups = t["group"].as_table().unwrap();
            let list = |g: &str| -> Vec<String> {
                groups[g]["services"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
            };
            assert_eq!(list("outer"), ["c"]);
            assert_eq!(list("inner"), ["a", "b"]);
            assert_eq!(groups["inner"]["strategy"].as_str(), Some("one_for_all"));
            assert_eq!(groups["outer"]["strategy"].as_str(), Some(strategy));
        }
    }

    #[test]
    fn nested_supervisors_restarted_by_a_sibling_are_rejected() {
        let e = errors(&NESTED.replace("STRATEGY", "one_for_all"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, Some(6));
        assert!(e[0].message.contains("nested supervisor \"inner\" cannot be converted"), "{}", e[0]);
        // rest_for_one with a service before the nested supervisor.
        let text = NESTED.replace("STRATEGY", "rest_for_one").replace("name = c", "name = c\n");
        let moved = {
            let (head, rest) = text.split_at(text.find("        <entry>\n            type = supervisor").unwrap());
            let c_start = rest.find("        <entry>\n            type = service\n            name = c").unwrap();
            let c_end = c_start + rest[c_start..].find("</entry>\n").unwrap() + "</entry>\n".len();
            format!("{head}{}{}{}", &rest[c_start..c_end], &rest[..c_start], &rest[c_end..])
        };
        let e = errors(&moved);
        assert!(e[0].message.contains("rest_for_one"), "{}", e[0]);
    }

    #[test]
    fn config_general_syntax() {
        let text = "# a comment
/* a C comment
   over lines */
<simplevisor>
    interval 30     # key and value without =
</simplevisor>
var_bin = /opt/bin
<entry >
    type=service
    name \"quoted\"
    var_conf = /etc/x.conf
    start = ${var_bin}/x --conf $var_conf \\
            --literal \\$HOME --hash \\# 'single $quoted'
    stop <<EOF
        /opt/bin/x
        --stop
    EOF
</entry>
";
        assert!(looks_like(text));
        let t = table(&convert(text));
        let s = &t["service"]["quoted"];
        let start: Vec<&str> = s["start"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(
            start,
            ["/opt/bin/x", "--conf", "/etc/x.conf", "--literal", "$HOME", "--hash", "#", "'single", "$quoted'"]
        );
        let stop: Vec<&str> = s["stop"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(stop, ["/opt/bin/x", "--stop"]);
        assert_eq!(s["check_interval"].as_str(), Some("30s"));
    }

    #[test]
    fn includes_are_relative_to_the_including_file_and_may_be_globs() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main.conf");
        std::fs::create_dir(dir.path().join("services")).unwrap();
        std::fs::write(dir.path().join("services/b.conf"), CUSTOM1).unwrap();
        std::fs::write(dir.path().join("services/a.conf"), HTTPD).unwrap();
        std::fs::write(dir.path().join("services/.hidden.conf"), "junk").unwrap();
        std::fs::write(dir.path().join("list.conf"), "<<include services/*.conf>>\n").unwrap();
        let text =
            "<entry>\n type = supervisor\n name = s\n <children>\n  <<include list.conf>>\n </children>\n</entry>\n";
        let toml = to_toml(&main, text).unwrap_or_else(|e| panic!("{e}"));
        let t = table(&toml);
        let services: Vec<&str> =
            t["group"]["s"]["services"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(services, ["httpd", "custom1"]);
        assert!(
            toml.contains(&format!("# {}:1\n[service.httpd]", dir.path().join("services/a.conf").display())),
            "{toml}"
        );

        // An error in an included file names that file and its line.
        std::fs::write(
            dir.path().join("services/a.conf"),
            "<entry>\n type = service\n name = x\n colour = red\n start = /bin/x\n</entry>\n",
        )
        .unwrap();
        let e = to_toml(&main, text).unwrap_err().0;
        assert_eq!(e[0].path, dir.path().join("services/a.conf"));
        assert_eq!((e[0].line, e[0].key.as_deref(), e[0].service.as_deref()), (Some(4), Some("colour"), Some("x")));

        // A missing include, and one that includes itself.
        let e = to_toml(&main, "<<include nothere.conf>>\n").unwrap_err().0;
        assert!(e[0].message.contains("nothere.conf"), "{}", e[0]);
        std::fs::write(dir.path().join("loop.conf"), "<<include loop.conf>>\n").unwrap();
        let e = to_toml(&main, "<<include loop.conf>>\n").unwrap_err().0;
        assert!(e[0].message.contains("includes itself"), "{}", e[0]);
        assert_eq!(e[0].path, dir.path().join("loop.conf"));
    }

    #[test]
    fn errors_name_the_file_line_entry_and_key() {
        let text = "<simplevisor>
    interval = often
    colour = blue
</simplevisor>
<entry>
    type = service
    name = a
    start = /bin/a
    timeout = 0
    expected = Running
    start = /bin/b
    frobnicate = 1
</entry>
<entry>
    type = service
    name = b
</entry>
<entry>
    type = service
    start = /bin/c
</entry>
<entry>
    type = daemon
    name = d
</entry>
";
        let e = errors(text);
        let at = |key: &str| e.iter().find(|e| e.key.as_deref() == Some(key) || (key.is_empty() && e.key.is_none()));
        let found: Vec<(Option<usize>, Option<&str>, Option<&str>)> =
            e.iter().map(|e| (e.line, e.service.as_deref(), e.key.as_deref())).collect();
        assert_eq!(
            found,
            [
                (Some(2), None, Some("interval")),
                (Some(3), None, Some("colour")),
                (Some(9), Some("a"), Some("timeout")),
                (Some(10), Some("a"), Some("expected")),
                (Some(11), Some("a"), Some("start")),
                (Some(12), Some("a"), Some("frobnicate")),
                (Some(14), Some("b"), None),
                (Some(18), None, Some("name")),
                (Some(23), Some("d"), Some("type")),
            ],
            "{e:#?}"
        );
        assert!(at("colour").unwrap().message.contains("interval, loglevel"), "the known keys are listed");
        assert!(at("frobnicate").unwrap().message.contains("control, start, stop"));
        let shown = at("timeout").unwrap().to_string();
        assert!(shown.starts_with("/etc/simplevisor/demo.conf:9:5: service \"a\", key \"timeout\": "), "{shown}");
        assert!(at("start").unwrap().message.contains("given twice (first at line 8)"));
    }

    #[test]
    fn syntax_errors_stop_at_the_first() {
        let cases = [
            ("<entry>\n type = service\n", 1, "has no end"),
            ("<entry>\n</children>\n", 2, "does not end the block <entry>"),
            ("</entry>\n", 1, "not started"),
            ("<entry>\n start = $nothing\n</entry>\n", 2, "$nothing is not defined"),
            ("<entry>\n stop <<EOF\n x\n</entry>\n", 2, "has no end"),
            ("<entry x>\n</entry>\n", 1, "named block"),
            ("<entry>\n pattern = a.*/b\n</entry>\n", 2, "\"*/\" without"),
            ("<entry>\n start = /bin/x \\\n", 2, "goes on"),
        ];
        for (text, line, message) in cases {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text}: {e:?}");
            assert_eq!(e[0].line, Some(line), "{text}: {}", e[0]);
            assert!(e[0].message.contains(message), "{text}: {}", e[0]);
        }
    }

    #[test]
    fn supervisor_entry_errors() {
        let e = errors("<entry>\n type = supervisor\n name = s\n strategy = one_for_some\n</entry>\n");
        let keys: Vec<_> = e.iter().map(|e| (e.line, e.key.as_deref())).collect();
        assert_eq!(keys, [(Some(1), Some("<children>")), (Some(4), Some("strategy"))], "{e:?}");
        assert!(e[1].message.starts_with("supervisor \"s\": expected one of one_for_one"), "{}", e[1]);
        let dup = "<entry>\n type = supervisor\n <children>\n  <entry>\n   type = service\n   name = a\n   start = x\n  </entry>\n  \
                   <entry>\n   type = service\n   name = a\n   start = y\n  </entry>\n </children>\n</entry>\n";
        let e = errors(dup);
        assert_eq!((e.len(), e[0].line, e[0].key.as_deref()), (1, Some(11), Some("name")), "{e:?}");
        assert!(errors("var_x = 1\n").iter().any(|e| e.message.contains("no <entry> block")));
    }

    #[test]
    fn recognition() {
        assert!(looks_like("\n# simplevisor\n\n<ENTRY>\n"));
        assert!(looks_like("<simplevisor>\n"));
        assert!(looks_like("<<include services/*.conf>>\n"));
        assert!(!looks_like("[service.x]\ncommand = \"true\"\n"));
        assert!(!looks_like("<runner>\nprogram sleep 1\n</runner>\n"));
        assert!(!looks_like("# only a comment\n"));
    }

    #[test]
    fn globs() {
        let p = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(wildcard(&p("*.conf"), &p("a.conf")));
        assert!(wildcard(&p("[a-c]?.conf"), &p("b1.conf")));
        assert!(!wildcard(&p("[!a-c]?.conf"), &p("b1.conf")));
        assert!(wildcard(&p("\\*"), &p("*")));
        assert_eq!(expand_braces("x/{a,b{1,2}}.c"), ["x/a.c", "x/b1.c", "x/b2.c"]);
        assert_eq!(expand_braces("x{}"), ["x{}"]);
    }
}
