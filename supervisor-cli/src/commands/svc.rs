//! `svc`, `svstat` and the front ends `svcstart`, `svcstop`, `svcreset`,
//! `svcrestart` for daemontools service directories.

use std::path::PathBuf;

use clap::Args;

use crate::exit::CliError;

/// `svc -udopchaitkx DIR...`.
#[derive(Debug, Clone, Args)]
pub struct SvcArgs {
    /// Control letters, as daemontools' svc takes them (`-u`, `-dx`, ...).
    #[arg(allow_hyphen_values = true, required = true)]
    pub args: Vec<String>,
}

/// `svstat DIR...`.
#[derive(Debug, Clone, Args)]
pub struct SvstatArgs {
    /// The service directories.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The front-end commands' arguments.
#[derive(Debug, Clone, Args)]
pub struct FrontArgs {
    /// The service directory.
    pub dir: PathBuf,
    /// Create or remove the `down` file so that the state survives a reboot.
    #[arg(long)]
    pub persist: bool,
}

/// Which front-end command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// `svcstart`.
    Start,
    /// `svcstop`.
    Stop,
    /// `svcreset`.
    Reset,
    /// `svcrestart`.
    Restart,
}

/// `svc`.
///
/// # Errors
///
/// Not implemented yet.
pub fn svc(_args: &SvcArgs) -> Result<u8, CliError> {
    Err(CliError::Failed("svc: not implemented yet".into()))
}

/// `svstat`.
///
/// # Errors
///
/// Not implemented yet.
pub fn svstat(_args: &SvstatArgs) -> Result<u8, CliError> {
    Err(CliError::Failed("svstat: not implemented yet".into()))
}

/// The front ends.
///
/// # Errors
///
/// Not implemented yet.
pub fn front(_which: Front, _args: &FrontArgs) -> Result<u8, CliError> {
    Err(CliError::Failed("not implemented yet".into()))
}
