//! Error collection and the typed readers of raw TOML values.
//!
//! The file is first parsed into toml's spanned document tree
//! ([`DeTable`]): every key and value keeps its byte range. The readers
//! here turn one raw value into the type a key needs, or record an error
//! that points at the value and says what was expected and what was found,
//! and let the caller go on so that all errors are collected.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use supervisor_core::Command;
use toml::de::{DeInteger, DeTable, DeValue};
use toml::Spanned;

use super::ConfigError;

/// A raw value with its span.
pub(super) type Raw<'i> = Spanned<DeValue<'i>>;

/// The tables under a top-level key such as `service` (`[service.NAME]`),
/// in file order; when the value is not a table, an error that shows
/// `example` and no tables.
pub(super) fn tables_in_order<'v, 'i>(
    diag: &mut Diag<'_>,
    key: &str,
    example: &str,
    v: &'v Raw<'i>,
) -> Vec<(&'v Spanned<toml::de::DeString<'i>>, &'v Raw<'i>)> {
    let DeValue::Table(table) = v.get_ref() else {
        let message = format!("expected a table of {key}s such as {example}, found {}", found(v.get_ref()));
        diag.error(Some(v.span()), None, Some(key), message);
        return Vec::new();
    };
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// The longest duration accepted for any key (the engine adds durations
/// to the clock, which must not overflow).
pub(super) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Collects the errors of one file and maps byte offsets to positions.
pub(super) struct Diag<'t> {
    path: PathBuf,
    text: &'t str,
    line_starts: Vec<usize>,
    /// The errors so far, in the order they were found.
    pub(super) errors: Vec<ConfigError>,
}

impl<'t> Diag<'t> {
    pub(super) fn new(path: &Path, text: &'t str) -> Diag<'t> {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Diag { path: path.to_path_buf(), text, line_starts, errors: Vec::new() }
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    /// Records an error at the start of `span` (no position when `None`).
    pub(super) fn error(
        &mut self,
        span: Option<Range<usize>>,
        service: Option<&str>,
        key: Option<&str>,
        message: impl Into<String>,
    ) {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = self.position(s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        self.errors.push(ConfigError {
            path: self.path.clone(),
            line,
            column,
            service: service.map(str::to_owned),
            key: key.map(str::to_owned),
            message: message.into(),
        });
    }
}

/// Where errors go while one table (`[supervisor]` or a service) is read.
pub(super) struct Scope<'a, 't> {
    pub(super) diag: &'a mut Diag<'t>,
    /// The service being read, if any.
    pub(super) service: Option<&'a str>,
    /// The directory that relative paths are relative to.
    pub(super) base: &'a Path,
}

impl Scope<'_, '_> {
    /// Records an error about `key` at `span`.
    pub(super) fn error(&mut self, span: Range<usize>, key: Option<&str>, message: impl Into<String>) {
        self.diag.error(Some(span), self.service, key, message);
    }

    /// Records "expected {expected}, found {value}".
    pub(super) fn mismatch(&mut self, key: &str, value: &Raw<'_>, expected: &str) {
        self.error(value.span(), Some(key), format!("expected {expected}, found {}", found(value.get_ref())));
    }

    /// Splits `table` into its known keys, reporting every other key.
    pub(super) fn fields<'v, 'i>(
        &mut self,
        table: &'v DeTable<'i>,
        valid: &[&'static str],
    ) -> BTreeMap<&'static str, &'v Raw<'i>> {
        self.fields_in(None, table, valid)
    }

    /// [`Scope::fields`] for the table of key `parent` (such as
    /// `transcript`): unknown keys are reported as `PARENT.KEY`.
    pub(super) fn fields_in<'v, 'i>(
        &mut self,
        parent: Option<&str>,
        table: &'v DeTable<'i>,
        valid: &[&'static str],
    ) -> BTreeMap<&'static str, &'v Raw<'i>> {
        let mut known = BTreeMap::new();
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            if let Some(v) = valid.iter().find(|v| **v == name) {
                known.insert(*v, value);
            } else {
                let message = format!("unknown key; the valid keys are: {}", valid.join(", "));
                let full = match parent {
                    Some(p) => format!("{p}.{name}"),
                    None => name.to_owned(),
                };
                self.error(key.span(), Some(&full), message);
            }
        }
        known
    }

    /// A string.
    pub(super) fn string<'v>(&mut self, key: &str, value: &'v Raw<'_>) -> Option<&'v str> {
        if let DeValue::String(s) = value.get_ref() {
            Some(s)
        } else {
            self.mismatch(key, value, "a string");
            None
        }
    }

    /// A boolean.
    pub(super) fn boolean(&mut self, key: &str, value: &Raw<'_>) -> Option<bool> {
        if let DeValue::Boolean(b) = value.get_ref() {
            Some(*b)
        } else {
            self.mismatch(key, value, "true or false");
            None
        }
    }

    /// A table.
    pub(super) fn table<'v, 'i>(&mut self, key: &str, value: &'v Raw<'i>) -> Option<&'v DeTable<'i>> {
        if let DeValue::Table(t) = value.get_ref() {
            Some(t)
        } else {
            self.mismatch(key, value, "a table");
            None
        }
    }

    /// An array.
    pub(super) fn array<'v, 'i>(&mut self, key: &str, value: &'v Raw<'i>) -> Option<&'v [Raw<'i>]> {
        if let DeValue::Array(a) = value.get_ref() {
            Some(a)
        } else {
            self.mismatch(key, value, "an array");
            None
        }
    }

    /// An integer in `range`; `expected` describes what is wanted.
    pub(super) fn integer(&mut self, key: &str, value: &Raw<'_>, range: Range<i64>, expected: &str) -> Option<i64> {
        if let DeValue::Integer(i) = value.get_ref() {
            match integer_value(i) {
                Some(n) if range.contains(&n) => Some(n),
                _ => {
                    self.mismatch(key, value, expected);
                    None
                }
            }
        } else {
            self.mismatch(key, value, expected);
            None
        }
    }

    /// One of a fixed set of words.
    pub(super) fn choice<T: Copy>(&mut self, key: &str, value: &Raw<'_>, options: &[(&str, T)]) -> Option<T> {
        if let DeValue::String(s) = value.get_ref() {
            if let Some((_, v)) = options.iter().find(|(name, _)| *name == s.as_ref()) {
                return Some(*v);
            }
        }
        let names: Vec<String> = options.iter().map(|(name, _)| format!("{name:?}")).collect();
        self.mismatch(key, value, &format!("one of {}", names.join(", ")));
        None
    }

    /// A duration string such as `"10s"`, at most [`MAX_DURATION`].
    pub(super) fn duration(&mut self, key: &str, value: &Raw<'_>) -> Option<Duration> {
        const EXPECTED: &str = "a duration such as \"10s\" or \"500ms\"";
        match value.get_ref() {
            DeValue::String(s) => match humantime::parse_duration(s) {
                Ok(d) if d <= MAX_DURATION => Some(d),
                Ok(_) => {
                    let message = format!("expected a duration of at most 365 days, found {s:?}");
                    self.error(value.span(), Some(key), message);
                    None
                }
                Err(_) => {
                    self.mismatch(key, value, EXPECTED);
                    None
                }
            },
            DeValue::Integer(i) => {
                let message =
                    format!("expected {EXPECTED}, found the number {i} (a duration needs a unit: write \"{i}s\")");
                self.error(value.span(), Some(key), message);
                None
            }
            _ => {
                self.mismatch(key, value, EXPECTED);
                None
            }
        }
    }

    /// A size in bytes, more than zero: a string such as `"10MB"`,
    /// `"512 KiB"` or `"1000"` (see [`parse_size`]), or an integer.
    pub(super) fn size(&mut self, key: &str, value: &Raw<'_>) -> Option<u64> {
        const EXPECTED: &str = "a size such as \"10MB\", \"512KiB\" or \"1000\" (bytes)";
        let parsed = match value.get_ref() {
            DeValue::String(s) => match parse_size(s) {
                Ok(n) => n,
                Err(SizeError::TooLarge) => {
                    self.mismatch(key, value, &format!("a size of at most {} bytes", u64::MAX));
                    return None;
                }
                Err(_) => {
                    self.mismatch(key, value, EXPECTED);
                    return None;
                }
            },
            DeValue::Integer(i) => match integer_value(i) {
                Some(n) if n >= 0 => n as u64,
                _ => 0,
            },
            _ => {
                self.mismatch(key, value, EXPECTED);
                return None;
            }
        };
        if parsed == 0 {
            self.mismatch(key, value, "a size of at least 1 byte");
            return None;
        }
        Some(parsed)
    }

    /// A file mode creation mask: an octal string (`"022"`) or an octal
    /// integer (`0o022`), at most `0o777`.
    pub(super) fn umask(&mut self, key: &str, value: &Raw<'_>) -> Option<u32> {
        const EXPECTED: &str =
            "an octal umask from \"000\" to \"777\" (a string such as \"022\" or an integer such as 0o022)";
        let mask = match value.get_ref() {
            DeValue::String(t) if !t.is_empty() && t.chars().all(|c| ('0'..='7').contains(&c)) => {
                u32::from_str_radix(t, 8).ok()
            }
            DeValue::Integer(i) if i.radix() == 8 || integer_value(i) == Some(0) => {
                integer_value(i).and_then(|n| u32::try_from(n).ok())
            }
            DeValue::Integer(i) if i.radix() == 10 && integer_value(i).is_some_and(|n| n > 0) => {
                let message =
                    format!("expected {EXPECTED}, found the decimal integer {i} (write \"{i:0>3}\" or 0o{i})");
                self.error(value.span(), Some(key), message);
                return None;
            }
            _ => None,
        };
        match mask {
            Some(m) if m <= 0o777 => Some(m),
            _ => {
                self.mismatch(key, value, EXPECTED);
                None
            }
        }
    }

    /// `command`: a string split into words, a string for `sh -c`, or an
    /// array of strings.
    pub(super) fn command(&mut self, key: &str, v: &Raw<'_>, shell: bool) -> Option<Command> {
        match v.get_ref() {
            DeValue::String(line) if shell => {
                if line.trim().is_empty() {
                    self.mismatch(key, v, "a non-empty shell command line");
                    return None;
                }
                Some(Command::Shell(line.to_string()))
            }
            _ if shell => {
                self.mismatch(key, v, "a string (with shell = true the command is one line for /bin/sh -c)");
                None
            }
            DeValue::String(line) => match Command::parse(line) {
                Ok(c) => Some(c),
                Err(e) => {
                    let message =
                        format!("expected a command line, found {line:?}, which cannot be split into words: {e}");
                    self.error(v.span(), Some(key), message);
                    None
                }
            },
            DeValue::Array(items) => {
                const EXPECTED: &str = "a command line or a non-empty array of strings";
                if items.is_empty() {
                    self.mismatch(key, v, EXPECTED);
                    return None;
                }
                let mut argv = Vec::with_capacity(items.len());
                for item in items {
                    match item.get_ref() {
                        DeValue::String(a) if a.contains('\0') => self.mismatch(key, item, "a string without NUL"),
                        DeValue::String(a) => argv.push(a.to_string()),
                        _ => self.mismatch(key, item, "a string (each argument is one string)"),
                    }
                }
                if argv.first().is_some_and(std::string::String::is_empty) {
                    self.mismatch(key, &items[0], "a program name or path as the first element");
                    return None;
                }
                (argv.len() == items.len()).then_some(Command::Argv(argv))
            }
            _ => {
                self.mismatch(key, v, "a command line or a non-empty array of strings");
                None
            }
        }
    }

    /// `path` (already resolved) when a Unix socket can have it: at most
    /// [`MAX_SOCKET_PATH`] bytes; otherwise an error at `value`.
    pub(super) fn socket_path(&mut self, key: &str, value: &Raw<'_>, path: PathBuf) -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let len = path.as_os_str().as_bytes().len();
        if len <= MAX_SOCKET_PATH {
            return Some(path);
        }
        let message = format!(
            "expected a socket path of at most {MAX_SOCKET_PATH} bytes, found {:?}, which is {len} bytes long \
             (a relative path is resolved against the configuration file's directory)",
            path.display().to_string()
        );
        self.error(value.span(), Some(key), message);
        None
    }

    /// A non-empty path string, resolved against the base directory.
    pub(super) fn path(&mut self, key: &str, value: &Raw<'_>) -> Option<PathBuf> {
        match value.get_ref() {
            DeValue::String(s) if !s.is_empty() && !s.contains('\0') => Some(resolve(self.base, Path::new(s.as_ref()))),
            _ => {
                self.mismatch(key, value, "a path");
                None
            }
        }
    }
}

/// The longest path of a Unix socket (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// `path` made absolute against `base`, with `.` components removed.
pub(super) fn resolve(base: &Path, path: &Path) -> PathBuf {
    base.join(path).components().filter(|c| *c != Component::CurDir).collect()
}

/// The size parser (shared with `supervisor exec --limit-mem`): decimal
/// digits, optional spaces, and an optional unit, case-insensitive: `B`,
/// decimal `KB`, `MB`, `GB` or binary `KiB`, `MiB`, `GiB`.
pub(super) use supervisor_core::limits::{parse_size, SizeError};

/// The value of a TOML integer, when it fits an `i64`.
pub(super) fn integer_value(i: &DeInteger<'_>) -> Option<i64> {
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// Describes a found value for an error message: strings quoted, numbers
/// as written, compound values by their kind.
pub(super) fn found(value: &DeValue<'_>) -> String {
    const LONGEST: usize = 60;
    match value {
        DeValue::String(s) if s.chars().count() > LONGEST => {
            let head: String = s.chars().take(LONGEST).collect();
            format!("{head:?}...")
        }
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => format!("the date-time {d}"),
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

/// Whether `name` is a valid supervisor or service name:
/// `[A-Za-z0-9_.-]+`, other than `.` and `..`.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// What a valid name looks like, for error messages.
pub(super) const NAME_RULE: &str = "letters, digits, \"_\", \".\" and \"-\" (not \".\" or \"..\")";

/// Finds the `[service.NAME]` header that the byte `offset` follows, for
/// naming the service in a syntax error.
pub(super) fn service_before(text: &str, offset: usize) -> Option<String> {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    for line in before.lines().rev() {
        let Some(header) = line.trim_start().strip_prefix('[') else { continue };
        let header = header.strip_prefix('[').unwrap_or(header).trim_start();
        let rest = header.strip_prefix("service")?;
        let rest = rest.trim_start().strip_prefix('.')?.trim_start();
        let name: String = match rest.chars().next()? {
            q @ ('"' | '\'') => rest[1..].chars().take_while(|c| *c != q).collect(),
            _ => rest.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')).collect(),
        };
        return (!name.is_empty()).then_some(name);
    }
    None
}
