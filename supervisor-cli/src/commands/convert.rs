//! `convert FILE`: the TOML equivalent of a zdaemon or simplevisor
//! configuration file, on standard output.
//!
//! The kind of file is recognised by its content, as `-c` does. The TOML
//! printed loads back to the same configuration (the same services,
//! supervisor name, runtime directory, socket...), so it can replace the
//! original file. A TOML file is checked and printed unchanged, with a
//! note on standard error. An invalid file prints its errors and exits 6.
//! No supervisor needs to run.

use std::path::Path;

use crate::config::{simplevisor, zdaemon, Config, ConfigError, ConfigErrors, Flavour};
use crate::exit::{self, CliError};

/// `convert FILE`.
///
/// # Errors
///
/// An unreadable file (6, as for `-c`), or the file's errors (6).
pub fn convert(file: &Path) -> Result<u8, CliError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        CliError::Config(ConfigErrors(vec![ConfigError::new(file, format!("cannot read the configuration: {e}"))]))
    })?;
    match Flavour::detect(&text) {
        Flavour::Zdaemon => {
            let toml = zdaemon::to_toml(file, &text).map_err(CliError::Config)?;
            crate::out::data(&toml);
        }
        Flavour::Simplevisor => {
            let toml = simplevisor::to_toml(file, &text).map_err(CliError::Config)?;
            Config::parse(file, &toml).map_err(CliError::Config)?;
            crate::data!("# The simplevisor configuration {}, in the TOML schema", file.display());
            crate::data!("# (see docs/config.md and the simplevisor part of docs/migrating.md).");
            crate::data!("");
            crate::out::data(&toml);
        }
        Flavour::Toml => {
            Config::parse(file, &text).map_err(CliError::Config)?;
            eprintln!("supervisor: {} is already a TOML configuration; printed unchanged", file.display());
            crate::out::data(&text);
        }
    }
    Ok(exit::OK)
}
