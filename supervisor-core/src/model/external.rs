//! Services controlled by commands (simplevisor): the commands, their
//! precedence rules, and what a pass reports.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Expected, ServiceState};

/// What `restart` does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartCommand {
    /// `stop` then `start` (simplevisor's `restart = stop+start`).
    StopStart,
    /// This command.
    Run(Vec<String>),
}

/// The commands of an externally controlled service, as simplevisor's
/// `<entry> type = service` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExternalSpec {
    /// Prefix of the `start`, `stop`, `status` and `restart` commands
    /// (`/sbin/service httpd` runs `/sbin/service httpd start`).
    pub control: Option<Vec<String>>,
    /// The start command (with `control`: instead of `CONTROL start`).
    pub start: Option<Vec<String>>,
    /// The stop command (ignored with `control`).
    pub stop: Option<Vec<String>>,
    /// The status command (ignored with `control`).
    pub status: Option<Vec<String>>,
    /// How to restart it; without one, `CONTROL restart` with `control`,
    /// else `stop` then `start`.
    pub restart: Option<RestartCommand>,
    /// A regular expression looked for in the command lines of the process
    /// table, for `status` and `stop` when neither they nor `control` are
    /// given; by default the start command line, literally.
    pub pattern: Option<String>,
    /// `PATH` for the commands (colon separated).
    pub path: Option<String>,
    /// The longest any command may run before it is killed with its group.
    pub timeout: Duration,
    /// How often the state is checked and repaired.
    pub check_interval: Duration,
}

impl ExternalSpec {
    /// A service controlled through `control` (such as an init script).
    #[must_use]
    pub fn control(prefix: Vec<String>) -> ExternalSpec {
        ExternalSpec { control: Some(prefix), ..ExternalSpec::start(Vec::new()) }
    }

    /// A service started by `start` and found in the process table.
    #[must_use]
    pub fn start(start: Vec<String>) -> ExternalSpec {
        ExternalSpec {
            control: None,
            start: (!start.is_empty()).then_some(start),
            stop: None,
            status: None,
            restart: None,
            pattern: None,
            path: None,
            timeout: Duration::from_secs(60),
            check_interval: Duration::from_secs(30),
        }
    }

    /// Checks the rules: one of `start` or `control`, non-empty commands,
    /// a valid `pattern` that does not match every command line (one that
    /// matches an empty line, such as `""` or `"x*"`).
    ///
    /// # Errors
    ///
    /// What is wrong, as a sentence.
    pub fn validate(&self) -> Result<(), String> {
        if self.control.is_none() && self.start.is_none() {
            return Err("an external service needs `start` or `control`".into());
        }
        let cmds = [&self.control, &self.start, &self.stop, &self.status];
        if cmds.iter().any(|c| c.as_ref().is_some_and(Vec::is_empty)) {
            return Err("empty command".into());
        }
        if let Some(RestartCommand::Run(v)) = &self.restart {
            if v.is_empty() {
                return Err("empty restart command".into());
            }
        }
        let re = self.pattern_regex()?;
        // With `control`, the pattern is never searched for.
        if self.control.is_none() && re.is_match("") {
            // "", "x*", "^" and the like: every process on the machine
            // would be signalled at a stop.
            return Err(format!(
                "the pattern {:?} matches an empty command line, so it matches every process: \
                 make it name the service's own command",
                re.as_str()
            ));
        }
        Ok(())
    }

    /// The regular expression for the process table: `pattern`, or the
    /// start command line matched literally.
    ///
    /// # Errors
    ///
    /// When `pattern` is not a valid regular expression.
    pub(crate) fn pattern_regex(&self) -> Result<regex_lite::Regex, String> {
        let text = match (&self.pattern, &self.start) {
            (Some(p), _) => p.clone(),
            (None, Some(s)) => regex_lite::escape(&s.join(" ")),
            (None, None) => String::from("$^"),
        };
        regex_lite::Regex::new(&text).map_err(|e| {
            // The parser's message draws the pattern over several lines;
            // its last line says what is wrong.
            let msg = e.to_string();
            let why = msg.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_string();
            format!("invalid pattern {text:?}: {}", why.strip_prefix("error: ").unwrap_or(&why))
        })
    }

    /// What an operation runs, by simplevisor's precedence rules:
    ///
    /// - with `control`: `start` if given, else `CONTROL start`;
    ///   `CONTROL stop`; `CONTROL status`; `restart` if given (`stop+start`
    ///   runs `CONTROL stop` then `CONTROL start`), else `CONTROL restart`.
    /// - without: `start`; `stop` if given, else the processes matching
    ///   the pattern are stopped; `status` if given, else the process table
    ///   is searched for the pattern; `restart` if given, else `stop` then
    ///   `start`.
    pub(crate) fn step(&self, op: Operation) -> Step {
        let with = |prefix: &Vec<String>, word: &str| {
            let mut v = prefix.clone();
            v.push(word.to_string());
            Step::Run(v)
        };
        match (&self.control, op) {
            (Some(c), Operation::Start) => self.start.clone().map_or_else(|| with(c, "start"), Step::Run),
            (Some(c), Operation::Stop) => with(c, "stop"),
            (Some(c), Operation::Status) => with(c, "status"),
            (Some(c), Operation::Restart) => match &self.restart {
                None => with(c, "restart"),
                Some(RestartCommand::StopStart) => Step::StopThenStart,
                Some(RestartCommand::Run(v)) => Step::Run(v.clone()),
            },
            (None, Operation::Start) => Step::Run(self.start.clone().unwrap_or_default()),
            (None, Operation::Stop) => self.stop.clone().map_or(Step::KillPattern, Step::Run),
            (None, Operation::Status) => self.status.clone().map_or(Step::FindPattern, Step::Run),
            (None, Operation::Restart) => match &self.restart {
                None | Some(RestartCommand::StopStart) => Step::StopThenStart,
                Some(RestartCommand::Run(v)) => Step::Run(v.clone()),
            },
        }
    }
}

/// An operation on an external service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Find out the state.
    Status,
    /// Start it.
    Start,
    /// Stop it.
    Stop,
    /// Restart it.
    Restart,
}

impl Operation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Status => "status",
            Operation::Start => "start",
            Operation::Stop => "stop",
            Operation::Restart => "restart",
        }
    }
}

/// How an operation is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run this command.
    Run(Vec<String>),
    /// Look for the pattern in the process table.
    FindPattern,
    /// Signal the processes that match the pattern and wait until none is
    /// left.
    KillPattern,
    /// Stop, then start.
    StopThenStart,
}

/// The state a `status` reports, from its LSB return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "code")]
pub enum Health {
    /// Return code 0.
    Running,
    /// Return code 3.
    Stopped,
    /// Any other return code (a hung command counts as 124): dead with a
    /// pidfile or lock left, unknown, or anything else.
    Dirty(i32),
}

impl Health {
    /// The state for LSB return code `code`.
    #[must_use]
    pub fn from_code(code: i32) -> Health {
        match code {
            0 => Health::Running,
            3 => Health::Stopped,
            c => Health::Dirty(c),
        }
    }

    pub(crate) fn state(self) -> ServiceState {
        match self {
            Health::Running => ServiceState::Running,
            Health::Stopped => ServiceState::Stopped,
            Health::Dirty(_) => ServiceState::Dirty,
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Running => f.write_str("running"),
            Health::Stopped => f.write_str("stopped"),
            Health::Dirty(c) => write!(f, "dirty (status exit {c})"),
        }
    }
}

/// What one pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PassReport {
    /// What the first `status` said (`None` for a restart, which does not
    /// ask first).
    pub found: Option<Health>,
    /// What was run to repair it, with the outcome: `"start: exit 0"`.
    pub actions: Vec<String>,
    /// What the last `status` said.
    pub result: Option<Health>,
    /// The wanted state during the pass.
    pub wanted: Option<Expected>,
    /// Whether the service ended as wanted.
    pub ok: bool,
}
