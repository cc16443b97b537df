//! `scan` and `supervise`: daemontools service directories.

use std::path::PathBuf;

use clap::Args;

use crate::exit::CliError;

/// `scan DIR`.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// The directory whose subdirectories are services.
    pub dir: PathBuf,
    /// Detach into the background (with the daemon machinery of `up`).
    #[arg(long)]
    pub daemon: bool,
    /// Rescan this often for new and removed service directories.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    pub rescan: std::time::Duration,
}

/// `supervise SERVICEDIR`.
#[derive(Debug, Clone, Args)]
pub struct SuperviseArgs {
    /// The service directory.
    pub dir: PathBuf,
}

/// `scan DIR`.
///
/// # Errors
///
/// Not implemented yet.
pub fn scan(args: &ScanArgs) -> Result<u8, CliError> {
    Err(CliError::Failed(format!("scan {}: not implemented yet", args.dir.display())))
}

/// `supervise SERVICEDIR`.
///
/// # Errors
///
/// Not implemented yet.
pub fn supervise(args: &SuperviseArgs) -> Result<u8, CliError> {
    Err(CliError::Failed(format!("supervise {}: not implemented yet", args.dir.display())))
}
