//! The one error type of the `dmaspace` command, and the exit status each kind maps to.
//!
//! Shaped like embedded-hal's errors: a concrete [`CliError`] that says what happened,
//! and a small [`ErrorKind`] that says what the caller should do about it (here: which
//! exit status to return). `main` prints the error as one line on stderr.

use std::error::Error;
use std::fmt;
use std::io;

use dmaspace_pci::TopologyError;
use dmaspace_pci::sysfs::SysfsError;

/// What kind of failure: decides the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is bad: an unreadable or malformed sysfs tree, an unknown function,
    /// an argument that names nothing. Exit status 2 (as clap's usage errors).
    BadInput,
    /// The output could not be written (closed pipe, full disk). Exit status 1.
    Output,
    /// Something the command does with fixed values was refused: a bug. Exit status 70
    /// (`EX_SOFTWARE`).
    Internal,
}

impl ErrorKind {
    /// The process exit status for this kind.
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::BadInput => 2,
            Self::Output => 1,
            Self::Internal => 70,
        }
    }
}

/// Everything a command can fail with.
#[derive(Debug)]
pub enum CliError {
    /// The sysfs tree could not be loaded.
    Sysfs(SysfsError),
    /// The topology refused a question (e.g. a function that is not in it).
    Topology(TopologyError),
    /// An argument that makes no sense for this topology (e.g. `--only` names nothing).
    Argument(String),
    /// Writing the output failed.
    Write(io::Error),
    /// Formatting into a buffer failed (only a `Display` impl can make that happen).
    Format(fmt::Error),
    /// The SVG could not be turned into a PNG.
    Render(String),
    /// The DMA layer refused a step of the demo, which uses fixed, valid values.
    #[cfg(feature = "demo")]
    Dma(Box<dyn Error + 'static>),
}

impl CliError {
    /// The kind, and with it the exit status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Sysfs(_) | Self::Topology(_) | Self::Argument(_) => ErrorKind::BadInput,
            Self::Write(_) => ErrorKind::Output,
            Self::Format(_) | Self::Render(_) => ErrorKind::Internal,
            #[cfg(feature = "demo")]
            Self::Dma(_) => ErrorKind::Internal,
        }
    }

    /// Whether it is a write to a closed pipe (the reader went away).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Write(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }

    /// Wraps an error of the DMA layer (for `map_err`).
    #[cfg(feature = "demo")]
    pub fn dma(e: impl Error + 'static) -> Self {
        Self::Dma(Box::new(e))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sysfs(e) => write!(f, "{e}"),
            Self::Topology(e) => write!(f, "{e}"),
            Self::Argument(what) => f.write_str(what),
            Self::Write(e) => write!(f, "writing the output: {e}"),
            Self::Format(_) => f.write_str("formatting the output failed"),
            Self::Render(what) => write!(f, "rendering the picture: {what}"),
            #[cfg(feature = "demo")]
            Self::Dma(e) => write!(f, "{e}"),
        }
    }
}

impl Error for CliError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Sysfs(e) => Some(e),
            Self::Topology(e) => Some(e),
            Self::Write(source) => Some(source),
            Self::Format(e) => Some(e),
            #[cfg(feature = "demo")]
            Self::Dma(e) => Some(e.as_ref()),
            Self::Argument(_) | Self::Render(_) => None,
        }
    }
}

impl From<SysfsError> for CliError {
    fn from(e: SysfsError) -> Self {
        Self::Sysfs(e)
    }
}

impl From<TopologyError> for CliError {
    fn from(e: TopologyError) -> Self {
        Self::Topology(e)
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        Self::Write(e)
    }
}

impl From<fmt::Error> for CliError {
    fn from(e: fmt::Error) -> Self {
        Self::Format(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_exit_codes() {
        let bad = CliError::Argument("x".into());
        assert_eq!(bad.kind().exit_code(), 2);
        let out = CliError::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(out.kind().exit_code(), 1);
        assert!(out.to_string().starts_with("writing the output"));
        assert_eq!(CliError::from(fmt::Error).kind().exit_code(), 70);
    }
}
