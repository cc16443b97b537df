//! The one command line that scripts run in loops, `supervisor [-c FILE]
//! status NAME...`, read without building the parser: clap's code and
//! its tree of 37 subcommands are most of what a short command costs
//! (docs/performance.md, H). Anything else, or anything unusual in this
//! shape (another option, a name that starts with `-`, a `--`), goes to
//! clap, which gives the same result.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::{Cli, Cmd};

/// The command line `args` (the program's name first) as a [`Cli`], when
/// it has exactly this shape; `None` for clap to read.
#[must_use]
pub fn parse(args: &[OsString]) -> Option<Cli> {
    let mut rest = args.get(1..)?.iter().map(|a| a.to_str());
    let mut config = None;
    let mut word = rest.next()??;
    match word {
        "-c" | "-C" | "--config" => {
            config = Some(PathBuf::from(rest.next()??));
            word = rest.next()??;
        }
        _ => {
            if let Some(path) = word.strip_prefix("--config=") {
                config = Some(PathBuf::from(path));
                word = rest.next()??;
            }
        }
    }
    if word != "status" {
        return None;
    }
    let mut names = Vec::new();
    for name in rest {
        let name = name?;
        if name.is_empty() || name.starts_with('-') {
            return None;
        }
        names.push(name.to_owned());
    }
    let odd = |c: &PathBuf| c.as_os_str().is_empty() || c.to_string_lossy().starts_with('-');
    if names.is_empty() || config.as_ref().is_some_and(odd) {
        return None;
    }
    // What clap takes from the environment for these options.
    let env = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    Some(Cli {
        config: config.or_else(|| env("SUPERVISOR_CONFIG")),
        socket: env("SUPERVISOR_SOCKET"),
        instance: None,
        quiet: false,
        verbose: false,
        json: false,
        zdaemon: crate::commands::zdaemon::ZdaemonArgs::default(),
        command: Cmd::Status { names },
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        std::iter::once("supervisor").chain(words.iter().copied()).map(OsString::from).collect()
    }

    /// The fast reading and clap's agree wherever the fast one answers.
    fn same(words: &[&str]) -> bool {
        let a = args(words);
        match parse(&a) {
            Some(fast) => {
                let slow = Cli::try_parse_from(&a).expect("clap reads it too");
                assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{words:?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn only_the_plain_status_of_named_services_is_read_fast() {
        assert!(same(&["-c", "app.toml", "status", "web"]));
        assert!(same(&["--config", "app.toml", "status", "web", "db"]));
        assert!(same(&["--config=app.toml", "status", "web"]));
        assert!(same(&["-C", "app.toml", "status", "web"]));
        for words in [
            &["status"][..],
            &["status", "--json", "web"],
            &["-q", "status", "web"],
            &["-c", "app.toml", "stop", "web"],
            &["-c", "app.toml", "status", "--", "web"],
            &["-c", "app.toml", "-v", "status", "web"],
            &["-n", "app", "status", "web"],
            &["-c"],
            &["-c", "", "status", "web"],
            &["-c", "--json", "status", "web"],
        ] {
            assert!(!same(words), "{words:?}");
        }
    }
}
