//! The reading of a simplevisor file with the rules of Perl's
//! `Config::General`: comments, continuations, here-documents, includes,
//! then blocks, options, quotes, variables and escapes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::glob::{glob, has_glob};
use super::{error_at, Pos};
use crate::config::ConfigError;

/// How deep `<<include>>`s may nest.
const MAX_INCLUDE_DEPTH: usize = 32;
/// The largest file an include reads.
const MAX_INCLUDE_SIZE: u64 = 16 * 1024 * 1024;

// ---------------------------------------------------------------------
// Reading: lines, comments, continuations, here-documents, includes.

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
pub(super) struct Logical {
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
pub(super) struct Reader {
    /// Every file read, the main one first, as shown in errors.
    pub(super) files: Vec<PathBuf>,
    /// The directory of the main file: the second place where relative
    /// includes are looked for.
    main_dir: PathBuf,
    pub(super) lines: Vec<Logical>,
    /// The files being read, outermost first (canonical where possible).
    chain: Vec<PathBuf>,
}

impl Reader {
    pub(super) fn new(path: &Path) -> Reader {
        Reader {
            files: vec![path.to_path_buf()],
            main_dir: parent_dir(path),
            lines: Vec::new(),
            chain: vec![std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())],
        }
    }

    #[allow(clippy::unnecessary_box_returns)] // it travels in a Result, where it is large
    fn error(&self, at: Pos, message: impl Into<String>) -> Box<ConfigError> {
        Box::new(error_at(&self.files, at, None, None, message))
    }

    /// Reads `text`, the content of file number `file`.
    pub(super) fn read(&mut self, file: usize, text: &str, depth: usize) -> Result<(), Box<ConfigError>> {
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
                        h.body.iter().flat_map(|l| [l.strip_prefix(indent).unwrap_or(l), "\n"]).collect()
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
            // A regular file of a sane size: not a directory, a device
            // (`/dev/zero` never ends), a FIFO (that would block).
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    let message = format!("cannot include {:?}: it is a directory", path.display().to_string());
                    return Err(self.error(at, message));
                }
                Ok(m) if !m.is_file() => {
                    let message = format!("cannot include {:?}: it is not a regular file", path.display().to_string());
                    return Err(self.error(at, message));
                }
                Ok(m) if m.len() > MAX_INCLUDE_SIZE => {
                    let message = format!(
                        "cannot include {:?}: it is larger than {MAX_INCLUDE_SIZE} bytes",
                        path.display().to_string()
                    );
                    return Err(self.error(at, message));
                }
                _ => {}
            }
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if self.chain.contains(&canonical) {
                let message = format!("{target:?} includes itself (through the files that include it)");
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
/// around it (`Config::General`: `s/\s*\/\*.*\*\/\s*//`), if there is one.
fn strip_c_comment(line: &str) -> Option<String> {
    let start = line.find("/*")?;
    let end = start + 2 + line[start + 2..].rfind("*/")? + 2;
    let before = line[..start].trim_end_matches(char::is_whitespace);
    let after = line[end..].trim_start_matches(char::is_whitespace);
    Some(format!("{before}{after}"))
}

/// Where a `#` comment starts: the first `#` not right after a backslash.
pub(super) fn comment_start(line: &str) -> Option<usize> {
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
pub(super) fn include_target(line: &str) -> Option<&str> {
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

// ---------------------------------------------------------------------
// Parsing: blocks, options, quotes, variables and escapes.

/// An option line: `key = value`, `key value` or `key`.
#[derive(Debug)]
pub(super) struct Opt {
    pub(super) key: String,
    /// `None` for a key alone on its line.
    pub(super) value: Option<String>,
    pub(super) at: Pos,
}

/// A `<name>` ... `</name>` block, or the whole file.
#[derive(Debug)]
pub(super) struct Block {
    pub(super) name: String,
    pub(super) at: Pos,
    pub(super) opts: Vec<Opt>,
    pub(super) blocks: Vec<Block>,
}

/// Builds the block tree, as `Config::General`'s `_parse` does: values lose
/// their enclosing double quotes, variables are interpolated (each block
/// sees the options before it in its own and enclosing blocks), then
/// `\$`, `\#`, `\"` and `\\` become `$`, `#`, `"` and `\`.
pub(super) fn parse(files: &[PathBuf], lines: &[Logical]) -> Result<Block, Box<ConfigError>> {
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
                let v = interpolate(v, vars).map_err(|e| {
                    let message = match e {
                        Interpolation::Undefined(name) => format!(
                            "${name} is not defined: a variable must be set before this line, in this block or an \
                             enclosing one (write \\$ for a literal dollar sign)"
                        ),
                        Interpolation::TooLong => {
                            format!(
                                "the value expands to more than {MAX_EXPANDED} bytes (variables that use each other)"
                            )
                        }
                    };
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

/// Splits an option line as `Config::General` does (`split /\s*=\s*|\s+/,
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
/// single quotes) by the variable's value.
#[derive(Debug)]
enum Interpolation {
    /// No variable of this name is set.
    Undefined(String),
    /// Longer than [`MAX_EXPANDED`].
    TooLong,
}

/// The longest value that variables may expand to: variables that use each
/// other grow exponentially.
const MAX_EXPANDED: usize = 64 * 1024;

fn interpolate(value: &str, vars: &HashMap<String, String>) -> Result<String, Interpolation> {
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
                out.push_str(vars.get(&name).ok_or(Interpolation::Undefined(name))?);
                if out.len() > MAX_EXPANDED {
                    return Err(Interpolation::TooLong);
                }
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
