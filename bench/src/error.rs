//! The one error type of the benchmark: what failed, in words, for the operator.

use std::fmt;

/// A measurement that could not be taken; the text says which and why.
#[derive(Debug)]
pub struct BenchError(pub String);

impl BenchError {
    /// An error with the given text.
    pub fn new(text: impl Into<String>) -> BenchError {
        BenchError(text.into())
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> BenchError {
        BenchError(format!("I/O error: {e}"))
    }
}

impl From<lapin::Error> for BenchError {
    fn from(e: lapin::Error) -> BenchError {
        BenchError(format!("broker error: {e}"))
    }
}

impl From<diesel::result::Error> for BenchError {
    fn from(e: diesel::result::Error) -> BenchError {
        BenchError(format!("database error: {e}"))
    }
}

impl From<diesel::ConnectionError> for BenchError {
    fn from(e: diesel::ConnectionError) -> BenchError {
        BenchError(format!("cannot connect to the database: {e}"))
    }
}

impl From<processor::db::DbError> for BenchError {
    fn from(e: processor::db::DbError) -> BenchError {
        BenchError(format!("database preparation failed: {e}"))
    }
}

impl From<tokio::task::JoinError> for BenchError {
    fn from(e: tokio::task::JoinError) -> BenchError {
        BenchError(format!("a measurement task failed: {e}"))
    }
}

/// Results of the benchmark's fallible steps.
pub type Result<T> = std::result::Result<T, BenchError>;
