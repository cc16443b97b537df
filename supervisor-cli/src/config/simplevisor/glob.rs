//! File name patterns in `<<include ...>>`, as `Config::General` expands
//! them (Perl's `bsd_glob`): `*`, `?`, `[...]` and `{a,b}`.

use std::path::{Path, PathBuf};

/// Whether an include is a glob (`Config::General`'s `IncludeGlob`).
pub(super) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The regular files that a glob matches, sorted, as Perl's `bsd_glob`
/// with `GLOB_BRACE` finds them: `*`, `?`, `[...]` within one name (a
/// leading `.` must be matched explicitly), `{a,b}` alternatives, `\`
/// escapes.
pub(super) fn glob(pattern: &Path) -> Vec<PathBuf> {
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

/// The most names that `{a,b}` alternatives may expand to (each one is
/// looked for on disk): 20 pairs of braces would make a million.
pub(super) const MAX_ALTERNATIVES: usize = 1024;

/// `{a,b}` alternatives, expanded (`{}` and unbalanced braces are kept),
/// at most [`MAX_ALTERNATIVES`] of them (the first ones).
pub(super) fn expand_braces(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    expand_braces_into(s, &mut out);
    out
}

fn expand_braces_into(s: &str, out: &mut Vec<String>) {
    if out.len() >= MAX_ALTERNATIVES {
        return;
    }
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
                for w in bounds.windows(2) {
                    let middle: String = chars[w[0] + 1..w[1]].iter().collect();
                    expand_braces_into(&format!("{prefix}{middle}{suffix}"), out);
                }
                return;
            }
            _ => i += 1,
        }
    }
    out.push(s.to_owned());
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

/// One element of a glob component.
enum Token<'a> {
    /// `*`: any run of characters.
    Star,
    /// `?`: one character.
    Any,
    /// `[...]`: one character of the class.
    Class(Box<dyn Fn(char) -> bool + 'a>),
    /// A character (`\x` for any `x`; a `[` that opens no class).
    Char(char),
}

fn tokens(pattern: &[char]) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(&c) = rest.first() {
        let (token, next) = match c {
            '*' => (Token::Star, &rest[1..]),
            '?' => (Token::Any, &rest[1..]),
            '[' => match char_class(rest) {
                Some((set, after)) => (Token::Class(set), after),
                None => (Token::Char('['), &rest[1..]),
            },
            '\\' if rest.len() > 1 => (Token::Char(rest[1]), &rest[2..]),
            c => (Token::Char(c), &rest[1..]),
        };
        out.push(token);
        rest = next;
    }
    out
}

/// Whether `name` matches the glob `pattern` (one path component).
///
/// In time proportional to the product of their lengths: a mismatch
/// goes back only to the last `*` (a recursive try of every split, as it
/// was, took exponential time in the number of `*`, and a fuzzed include
/// of 40 of them hung the reader).
pub(super) fn wildcard(pattern: &[char], name: &[char]) -> bool {
    let tokens = tokens(pattern);
    let matches = |t: &Token, c: char| match t {
        Token::Star => false,
        Token::Any => true,
        Token::Class(set) => set(c),
        Token::Char(x) => *x == c,
    };
    let (mut t, mut n) = (0, 0);
    // After the last `*` seen: the token after it, and where in the name
    // its match ends so far.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if matches!(tokens.get(t), Some(Token::Star)) {
            t += 1;
            star = Some((t, n));
        } else if tokens.get(t).is_some_and(|tok| matches(tok, name[n])) {
            t += 1;
            n += 1;
        } else if let Some((after, end)) = star {
            // Let the `*` take one character more, and try again.
            (t, n) = (after, end + 1);
            star = Some((after, end + 1));
        } else {
            return false;
        }
    }
    tokens[t..].iter().all(|tok| matches!(tok, Token::Star))
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
