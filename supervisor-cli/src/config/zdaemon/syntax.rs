//! `ZConfig`'s syntax: `<section>`...`</section>`, `key value` lines, `#`
//! comment lines and `%define NAME VALUE` with its substitutions.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::ConfigError;

/// A value with the 1-based line it came from (0: the command line).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct At<T> {
    pub(super) value: T,
    pub(super) line: usize,
}

impl<T> At<T> {
    pub(super) fn new(value: T, line: usize) -> At<T> {
        At { value, line }
    }
}

/// A `key value` line.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) value: String,
    pub(super) line: usize,
}

/// A section: its type (lower case), where it opens, and what it holds.
#[derive(Debug, Default)]
pub(super) struct Section {
    pub(super) kind: String,
    pub(super) line: usize,
    pub(super) entries: Vec<Entry>,
    pub(super) sections: Vec<Section>,
}

/// The errors of one zdaemon file.
pub(super) struct Errors<'p> {
    pub(super) path: &'p Path,
    pub(super) list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn at(&mut self, line: usize, key: Option<&str>, message: impl Into<String>) {
        self.list.push(ConfigError {
            path: self.path.to_path_buf(),
            line: (line > 0).then_some(line),
            column: None,
            service: None,
            key: key.map(str::to_owned),
            message: message.into(),
        });
    }
}

/// `word rest`: the first word and the rest, trimmed.
fn split_first(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// `ZConfig`'s substitution: `$NAME` and `${NAME}` by `%define`d values,
/// `$$` by `$`.
/// The longest value that `%define`s may expand to.
pub(super) const MAX_EXPANDED: usize = 64 * 1024;

pub(super) fn substitute(value: &str, defines: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            match r.find('}') {
                Some(end) => (&r[..end], &r[end + 1..]),
                None => return Err(format!("unterminated ${{ in {value:?}")),
            }
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !valid {
            return Err(format!(
                "\"$\" must be followed by a name or \"{{NAME}}\" (write \"$$\" for a dollar sign) in {value:?}"
            ));
        }
        match defines.get(&name.to_ascii_lowercase()) {
            Some(v) => out.push_str(v),
            None => return Err(format!("${name} is not defined (define it with %define {name} VALUE)")),
        }
        if out.len() > MAX_EXPANDED {
            // %defines that use each other grow exponentially.
            return Err(format!("the value expands to more than {MAX_EXPANDED} bytes"));
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `ZConfig`'s syntax into a tree whose root has no type.
pub(super) fn parse_tree(text: &str, errors: &mut Errors<'_>) -> Section {
    let mut stack = vec![Section::default()];
    let mut defines: BTreeMap<String, String> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('%') {
            let (directive, arg) = split_first(rest);
            match directive.to_ascii_lowercase().as_str() {
                "define" => {
                    let (name, value) = split_first(arg);
                    if name.is_empty() {
                        errors.at(n, None, "%define needs a name and a value");
                        continue;
                    }
                    match substitute(value, &defines) {
                        Ok(v) => {
                            if defines.insert(name.to_ascii_lowercase(), v).is_some() {
                                errors.at(n, None, format!("{name} is already defined"));
                            }
                        }
                        Err(e) => errors.at(n, None, e),
                    }
                }
                d @ ("include" | "import") => {
                    errors.at(n, None, format!("%{d} is not supported: put the whole configuration in one file"));
                }
                other => errors.at(n, None, format!("unknown directive %{other} (only %define is supported)")),
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix('<') {
            let Some(inner) = rest.strip_suffix('>') else {
                errors.at(n, None, "malformed section header: expected <type>, <type name> or </type>");
                continue;
            };
            if let Some(close) = inner.strip_prefix('/') {
                let kind = close.trim().to_ascii_lowercase();
                if stack.len() == 1 {
                    errors.at(n, None, format!("</{kind}> closes no section"));
                    continue;
                }
                let top = stack.last().expect("a section is open");
                if top.kind != kind {
                    let message = format!("</{kind}> does not close <{}> (opened at line {})", top.kind, top.line);
                    errors.at(n, None, message);
                    continue;
                }
                let done = stack.pop().expect("a section is open");
                stack.last_mut().expect("the root").sections.push(done);
                continue;
            }
            let (inner, empty) = match inner.strip_suffix('/') {
                Some(i) => (i, true),
                None => (inner, false),
            };
            let words: Vec<&str> = inner.split_whitespace().collect();
            if words.is_empty() || words.len() > 2 {
                errors.at(n, None, "malformed section header: expected <type>, <type name> or </type>");
                continue;
            }
            let section = Section { kind: words[0].to_ascii_lowercase(), line: n, ..Section::default() };
            if empty {
                stack.last_mut().expect("the root").sections.push(section);
            } else {
                stack.push(section);
            }
            continue;
        }
        let (key, value) = split_first(line);
        match substitute(value, &defines) {
            Ok(value) => {
                stack.last_mut().expect("the root").entries.push(Entry { key: key.to_owned(), value, line: n });
            }
            Err(e) => errors.at(n, Some(key), e),
        }
    }
    while stack.len() > 1 {
        let open = stack.pop().expect("a section is open");
        errors.at(open.line, None, format!("<{}> is not closed (missing </{}>)", open.kind, open.kind));
        stack.last_mut().expect("the root").sections.push(open);
    }
    stack.pop().expect("the root")
}
