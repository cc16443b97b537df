//! What a configuration error says: the file, the line and column, the
//! service and key, and the problem.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file (in JSON: `file`, `line`,
/// `column`, `service`, `key`, `message`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfigError {
    /// The configuration file.
    #[serde(rename = "file")]
    pub path: PathBuf,
    /// 1-based line of the offending text, when it has one.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending text.
    pub column: Option<usize>,
    /// The service concerned, if any.
    pub service: Option<String>,
    /// The key concerned, if any.
    pub key: Option<String>,
    /// What was expected and what was found.
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole (no position, service or key).
    pub fn new(path: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            service: None,
            key: None,
            message: message.into(),
        }
    }
}

/// `PATH:LINE:COLUMN: service "NAME", key "KEY": MESSAGE`, without the
/// parts that are unknown.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        match (&self.service, &self.key) {
            (Some(s), Some(k)) => write!(f, "service {s:?}, key {k:?}: ")?,
            (Some(s), None) => write!(f, "service {s:?}: ")?,
            (None, Some(k)) => write!(f, "key {k:?}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All the problems found in a configuration file (at least one).
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// One error per line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
