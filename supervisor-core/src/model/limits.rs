//! Soft resource limits (daemontools' `softlimit`) and sizes.

/// A limit value meaning "as high as the hard limit" (`RLIM_INFINITY`).
pub const UNLIMITED: u64 = libc::RLIM_INFINITY;

/// Soft resource limits for a program; `None` leaves a limit as it is
/// inherited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Limits {
    /// Bytes of memory: `RLIMIT_DATA`, `RLIMIT_STACK`, `RLIMIT_MEMLOCK` and
    /// `RLIMIT_AS` (`softlimit -m`).
    pub mem: Option<u64>,
    /// Open descriptors: `RLIMIT_NOFILE` (`softlimit -o`).
    pub files: Option<u64>,
    /// Processes of the (real) user: `RLIMIT_NPROC` (`softlimit -p`).
    pub procs: Option<u64>,
    /// Seconds of CPU time: `RLIMIT_CPU` (`softlimit -t`).
    pub cpu: Option<u64>,
    /// Bytes of a core dump: `RLIMIT_CORE` (`softlimit -c`); `0` means
    /// no core dumps.
    pub core: Option<u64>,
}

/// Why a size string was refused by [`parse_size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// Not a number of bytes with an optional known unit.
    #[error("expected a size such as \"10MB\", \"512KiB\" or \"1000\" (bytes)")]
    Invalid,
    /// More than `u64::MAX` bytes.
    #[error("a size may be at most {} bytes", u64::MAX)]
    TooLarge,
}

/// Parses a size: decimal digits, optional spaces, and an optional unit,
/// case-insensitive: `B`, decimal `KB`, `MB`, `GB` (powers of 1000) or
/// binary `KiB`, `MiB`, `GiB` (powers of 1024). No unit means bytes.
///
/// # Errors
///
/// [`SizeError`].
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 {
        return Err(SizeError::Invalid);
    }
    let unit = text[digits..].trim_start().to_ascii_lowercase();
    let multiplier: u64 = match unit.as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(SizeError::Invalid),
    };
    let number: u64 = text[..digits].parse().map_err(|_| SizeError::TooLarge)?;
    number.checked_mul(multiplier).ok_or(SizeError::TooLarge)
}
