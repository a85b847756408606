//! Errors of the parsers (naming the line or record) and of the collectors (naming the file).

use std::path::PathBuf;

/// Input that does not follow its format. `line` is 1-based; for binary formats it is the
/// record number (rpm header index entry, SQLite page) and `what` says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {line}: {message}")]
pub struct ParseError {
    pub what: &'static str,
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub fn at_line(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            what: "line",
            line,
            message: message.into(),
        }
    }

    pub fn at(what: &'static str, index: usize, message: impl Into<String>) -> Self {
        ParseError {
            what,
            line: index,
            message: message.into(),
        }
    }
}

/// A collector could not read what it found on the host.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    #[error("{}: {message}", path.display())]
    Unsupported { path: PathBuf, message: String },
}

impl CollectError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CollectError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn parse(path: impl Into<PathBuf>, source: ParseError) -> Self {
        CollectError::Parse {
            path: path.into(),
            source,
        }
    }
}
