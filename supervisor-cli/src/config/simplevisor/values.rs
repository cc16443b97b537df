//! Words and values as simplevisor reads them: commands split on white
//! space and `%XX`-unquoted, integers, and the TOML keys they become.

use super::toml_string;

/// A command as simplevisor runs it: split on whitespace, every word
/// `%XX`-unquoted (Python's `urllib.unquote`).
pub(super) fn words(value: &str) -> Vec<String> {
    value
        .split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .filter(|w| !w.is_empty())
        .map(unquote)
        .collect()
}

/// `%XX` (two hex digits) becomes the byte XX; the bytes are read as
/// UTF-8, as Python 3's `urllib.parse.unquote` does.
pub(in crate::config) fn unquote(word: &str) -> String {
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

/// An integer as Python's `int()` reads a string: blanks around, an
/// optional sign, digits (and `_` between digits).
pub(super) fn parse_int(s: &str) -> Option<i128> {
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
pub(super) fn toml_key(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_owned()
    } else {
        toml_string(key)
    }
}
