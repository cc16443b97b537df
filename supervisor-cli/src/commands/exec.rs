//! `exec`: set up the process, then exec a program (setuidgid, softlimit,
//! setlock, pgrphack).

use std::ffi::OsString;

use clap::Args;

use crate::exit::CliError;

/// `exec [OPTIONS] -- PROGRAM ARGS...`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub program: Vec<OsString>,
}

/// `exec`.
///
/// # Errors
///
/// Not implemented yet.
pub fn exec(_args: &ExecArgs) -> Result<u8, CliError> {
    Err(CliError::Failed("exec: not implemented yet".into()))
}
