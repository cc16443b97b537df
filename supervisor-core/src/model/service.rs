//! What to run: the [`Service`] description and its parts.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::model::ExternalSpec;
use crate::model::Limits;
use crate::model::RestartPolicy;
use crate::model::TaskSpec;
use crate::model::TranscriptConfig;
use crate::model::{HealthCheck, ReadyPolicy};

/// How a service's program is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An argument vector: the first element is the program, looked up in
    /// `PATH` when it has no `/`.
    Argv(Vec<String>),
    /// A command line run through `/bin/sh -c`.
    Shell(String),
}

impl Command {
    /// An argument vector: the program (looked up in `PATH` when it has
    /// no `/`) and its arguments, run without a shell.
    ///
    /// ```
    /// use supervisor_core::Command;
    /// let c = Command::argv(["sleep", "30"]);
    /// assert_eq!(c.to_argv(), ["sleep", "30"]);
    /// ```
    pub fn argv<I, S>(words: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command::Argv(words.into_iter().map(Into::into).collect())
    }

    /// Splits `line` into words as a POSIX shell would (single and double
    /// quotes, backslash escapes), without running a shell.
    ///
    /// # Errors
    ///
    /// [`SplitError`] for an unterminated quote, a trailing backslash or a
    /// line with no words.
    pub fn parse(line: &str) -> Result<Command, SplitError> {
        let words = split_words(line)?;
        if words.is_empty() {
            return Err(SplitError::Empty);
        }
        Ok(Command::Argv(words))
    }

    /// The argument vector that is executed (`/bin/sh -c LINE` for a
    /// shell command).
    #[must_use]
    pub fn to_argv(&self) -> Vec<String> {
        match self {
            Command::Argv(v) => v.clone(),
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Argv(v) => write!(f, "{}", v.join(" ")),
            Command::Shell(s) => write!(f, "sh -c {s:?}"),
        }
    }
}

/// Why a command line could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// A quote was opened and never closed.
    #[error("unterminated {0} quote")]
    UnterminatedQuote(&'static str),
    /// The line ends in a lone backslash.
    #[error("trailing backslash")]
    TrailingBackslash,
    /// The line holds no words at all.
    #[error("empty command")]
    Empty,
}

/// Splits a command line into words like `sh` does, without expansions.
///
/// Whitespace separates words; `'...'` keeps everything literally; `"..."`
/// keeps everything but lets `\` escape `"`, `\`, `$` and `` ` ``; outside
/// quotes `\` escapes any character.
///
/// # Errors
///
/// [`SplitError::UnterminatedQuote`] or [`SplitError::TrailingBackslash`].
pub fn split_words(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(SplitError::UnterminatedQuote("single")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(SplitError::UnterminatedQuote("double")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(SplitError::UnterminatedQuote("double")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    cur.push(c);
                }
                None => return Err(SplitError::TrailingBackslash),
            },
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The state a service should be in when the supervisor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    /// Start it (the default).
    #[default]
    Running,
    /// Leave it stopped until a `start` command.
    Stopped,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expected::Running => "running",
            Expected::Stopped => "stopped",
        })
    }
}

/// Where a child's standard output or error goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Output {
    /// The supervisor's own descriptor (the default).
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A file, created if needed and always appended to, never truncated.
    File(PathBuf),
    /// A pipe into the service's transcript ([`Service::transcript`]).
    Transcript,
    /// The write end of a pipe made with
    /// [`Engine::add_pipe`](crate::Engine::add_pipe), to feed another
    /// service's standard input (a daemontools `log/` service).
    Pipe(String),
}

/// Where a child's standard input comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Input {
    /// `/dev/null` (the default).
    #[default]
    Null,
    /// The read end of a pipe made with
    /// [`Engine::add_pipe`](crate::Engine::add_pipe).
    Pipe(String),
}

/// The environment a service is started with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Environment {
    /// Start from an empty environment instead of the supervisor's.
    pub clear: bool,
    /// Variables set on top (they win over inherited ones).
    pub vars: BTreeMap<String, String>,
}

/// Everything needed to run and stop one supervised program.
///
/// Build one with [`Service::new`] and adjust the public fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Service {
    /// Unique name within an engine.
    pub name: String,
    /// What to execute.
    pub command: Command,
    /// Working directory (the supervisor's when `None`).
    pub directory: Option<PathBuf>,
    /// Environment of the program.
    pub env: Environment,
    /// File mode creation mask (inherited when `None`).
    pub umask: Option<u32>,
    /// User to run as, by name or numeric uid; its groups are set too.
    pub user: Option<String>,
    /// Group to run as, by name or numeric gid (the user's primary group
    /// when only `user` is set).
    pub group: Option<String>,
    /// State wanted when the engine starts.
    pub expected: Expected,
    /// When and how fast to restart.
    pub restart: RestartPolicy,
    /// Signal that asks the program to stop (sent to its process group).
    pub stop_signal: Signal,
    /// How long to wait after `stop_signal` before `SIGKILL`.
    pub stop_timeout: Duration,
    /// Where standard input comes from.
    pub stdin: Input,
    /// Where standard output goes.
    pub stdout: Output,
    /// Where standard error goes.
    pub stderr: Output,
    /// The transcript that [`Output::Transcript`] streams go to.
    pub transcript: Option<TranscriptConfig>,
    /// A pidfile to keep the main process's pid in, for outside tools.
    pub pidfile: Option<PathBuf>,
    /// A program run after each exit of the main process, before the next
    /// start, with two more arguments: the exit code (or -1 after a
    /// signal) and the signal number (or 0); daemontools' and runit's
    /// `finish`.
    pub finish: Option<Vec<String>>,
    /// How long `finish` may run before it is killed.
    pub finish_timeout: Duration,
    /// For programs that insist on going to the background (what
    /// daemontools' `fghack` is for): when the main process exits with code
    /// 0 and leaves a descendant running, that descendant becomes the main
    /// process and is supervised in its place. Needs an engine that owns
    /// its process ([`Engine::own_process`](crate::Engine::own_process)).
    pub follow: bool,
    /// Soft resource limits of the program, as daemontools' `softlimit`
    /// sets them (none by default).
    pub limits: Limits,
    /// A lock file, as daemontools' `setlock` takes it: locked with
    /// `flock(LOCK_EX | LOCK_NB)` before each start, on a descriptor that
    /// the program inherits, so that the lock lasts as long as the program
    /// (and the descendants that keep the descriptor). While another
    /// process holds it, the start fails as a quick failure and is
    /// retried after the backoff delay.
    pub lock: Option<PathBuf>,
    /// A per-service runtime directory, as copkg's convention has it: the
    /// engine makes it, with `log/ etc/ console/ data/ run/`, before each
    /// start, and (unless [`pidfile`](Service::pidfile) is set) keeps the
    /// main process's pid in `run/start.pid`. Its path is what
    /// `{runtime_dir}` stands for in commands (see
    /// [`runtime_dir`](crate::runtime_dir)).
    pub runtime_dir: Option<PathBuf>,
    /// The copkg service coordinate (such as `1.idee.prod.trd`): what
    /// `{coordinate}` stands for in commands.
    pub coordinate: Option<String>,
    /// What kind of service it is: a program kept running (the default),
    /// a loop task, or a service controlled by commands.
    pub kind: Kind,
    /// When it counts as ready, and so `running`; without one, once it
    /// has stayed up for [`RestartPolicy::min_uptime`]. Daemons only.
    /// Boxed, as most services have none (so that thousands of services
    /// stay small): `Some(ReadyPolicy::new(check).into())`.
    pub ready: Option<Box<ReadyPolicy>>,
    /// A liveness check, made while it is ready; failing it restarts the
    /// service. Daemons only. Boxed, as `ready`.
    pub health: Option<Box<HealthCheck>>,
    /// With [`ReadyCheck::Systemd`](crate::ReadyCheck::Systemd): once ready, `WATCHDOG=1` must come
    /// at least this often, or the service is restarted
    /// (`WATCHDOG_USEC` is set for it).
    pub watchdog: Option<Duration>,
    /// Services it needs: it starts once they are ready, stops before
    /// them, and is stopped while one is down. Each must be added before
    /// it, and be a daemon or an external service.
    pub requires: Vec<String>,
    /// Services it starts after (once they are ready, stopped or failed)
    /// and stops before; order only. Each must be added before it.
    pub after: Vec<String>,
    /// When its process exits without being asked to, or it goes
    /// `fatal`, the engine stops everything, and
    /// [`Engine::exit_code`](crate::Engine::exit_code) is its exit code
    /// (`128 + N` after signal N): the container's main service. Daemons
    /// only.
    pub critical: bool,
}

/// What kind of service a [`Service`] is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Kind {
    /// A program kept running: started, watched, restarted by
    /// [`Service::restart`] (the default).
    #[default]
    Daemon,
    /// [`Service::command`] run every interval, never two runs at once
    /// (atomservice); see [`TaskSpec`](crate::TaskSpec).
    Task(Box<TaskSpec>),
    /// A service controlled by commands with LSB return codes
    /// (simplevisor); see [`ExternalSpec`](crate::ExternalSpec).
    /// [`Service::command`] is not run.
    External(Box<ExternalSpec>),
}

impl Kind {
    /// An external service: what its commands leave running (the daemon an
    /// init script starts) is not the supervisor's, so it is not marked,
    /// tracked or stopped as a service's descendants are.
    #[must_use]
    pub fn is_external(&self) -> bool {
        matches!(self, Kind::External(_))
    }

    /// `"daemon"`, `"task"` or `"external"`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Daemon => "daemon",
            Kind::Task(_) => "task",
            Kind::External(_) => "external",
        }
    }
}

impl Service {
    /// A service with the defaults: restart always, `SIGTERM` then
    /// `SIGKILL` after 10 s, output inherited, expected running.
    pub fn new(name: impl Into<String>, command: Command) -> Service {
        Service {
            name: name.into(),
            command,
            directory: None,
            env: Environment::default(),
            umask: None,
            user: None,
            group: None,
            expected: Expected::Running,
            restart: RestartPolicy::default(),
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            stdin: Input::Null,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            transcript: None,
            pidfile: None,
            finish: None,
            finish_timeout: Duration::from_secs(10),
            follow: false,
            limits: Limits::default(),
            lock: None,
            runtime_dir: None,
            coordinate: None,
            kind: Kind::Daemon,
            ready: None,
            health: None,
            watchdog: None,
            requires: Vec::new(),
            after: Vec::new(),
            critical: false,
        }
    }
}

/// Parses a signal given by name (`HUP`, `SIGHUP`, `hup`) or number (`1`).
///
/// # Errors
///
/// Returns the unrecognised text in an explanatory message.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("no signal has number {n}"));
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    full.parse::<Signal>()
        .map_err(|_| format!("unknown signal {t:?} (expected a name such as TERM or HUP, or a number)"))
}

/// The short name of a signal, without `SIG`: `TERM`, `KILL`.
#[must_use]
pub fn signal_name(sig: Signal) -> &'static str {
    let s = sig.as_str();
    s.strip_prefix("SIG").unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(split_words("a  b\tc").unwrap(), ["a", "b", "c"]);
        assert_eq!(split_words(r#"echo 'a b' "c \"d\"" e\ f"#).unwrap(), ["echo", "a b", "c \"d\"", "e f"]);
        assert_eq!(split_words("x ''").unwrap(), ["x", ""]);
        assert_eq!(split_words(r#""a\n""#).unwrap(), [r"a\n"]);
        assert_eq!(split_words("'abc"), Err(SplitError::UnterminatedQuote("single")));
        assert_eq!(split_words("\"abc"), Err(SplitError::UnterminatedQuote("double")));
        assert_eq!(split_words("abc\\"), Err(SplitError::TrailingBackslash));
        assert_eq!(Command::parse("   "), Err(SplitError::Empty));
    }

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("HUP"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("FOO").unwrap_err().contains("FOO"));
        assert!(parse_signal("999").is_err());
        assert_eq!(signal_name(Signal::SIGUSR1), "USR1");
    }
}
