//! `completions SHELL` and `man [--dir DIR]`: shell completions and man
//! pages, made from the command-line definition itself (`clap_complete`,
//! `clap_mangen`), so they never disagree with it.

use std::path::Path;

use clap::{CommandFactory, ValueEnum};

use crate::exit::{self, CliError};
use crate::Cli;

/// The shells `completions` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

fn failed(what: impl std::fmt::Display) -> CliError {
    CliError::Failed(what.to_string())
}

/// `completions SHELL`: the completion script on standard output.
///
/// # Errors
///
/// None in practice (writing into memory).
pub fn completions(shell: Shell) -> Result<u8, CliError> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "supervisor", &mut buf),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "supervisor", &mut buf),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "supervisor", &mut buf),
    }
    crate::out::data(&String::from_utf8_lossy(&buf));
    Ok(exit::OK)
}

/// `man`: `supervisor(1)` on standard output; with `--dir DIR`, that page
/// and one per subcommand (`supervisor-status.1`, ...) written into DIR.
///
/// # Errors
///
/// When a page cannot be written.
pub fn man(dir: Option<&Path>) -> Result<u8, CliError> {
    let mut cmd = Cli::command();
    // The global options (-c, --json, ...) onto every subcommand's page.
    cmd.build();
    let Some(dir) = dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf).map_err(failed)?;
        crate::out::data(&String::from_utf8_lossy(&buf));
        return Ok(exit::OK);
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    let mut written = Vec::new();
    let mut write = |name: String, page: clap::Command| -> Result<(), CliError> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf).map_err(failed)?;
        std::fs::write(&path, buf).map_err(|e| failed(format!("{}: {e}", path.display())))?;
        written.push(path);
        Ok(())
    };
    write("supervisor".into(), cmd.clone())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("supervisor-{}", sub.get_name());
        write(name.clone(), sub.clone().name(name))?;
    }
    crate::say!("{} man pages written in {}", written.len(), dir.display());
    Ok(exit::OK)
}
