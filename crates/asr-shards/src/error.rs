//! The error type of this crate.

use std::path::PathBuf;

/// What went wrong reading or writing shards and manifests. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// An I/O operation on a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Arrow refused to encode or decode a shard.
    #[error("{path}: Arrow IPC error: {source}")]
    Arrow {
        /// The shard.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// The file is not a shard this crate can read (wrong columns, types, metadata or
    /// a damaged IPC stream).
    #[error("{path}: not a valid shard: {message}")]
    InvalidShard {
        /// The shard.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A row index past the end of a shard.
    #[error("{path}: row {row} out of range (the shard has {num_rows} rows)")]
    RowOutOfRange {
        /// The shard.
        path: PathBuf,
        /// The requested row.
        row: usize,
        /// Rows in the shard.
        num_rows: usize,
    },
    /// A row cannot be written (e.g. more samples than a u32 holds).
    #[error("row {id:?}: {message}")]
    InvalidRow {
        /// The row's id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// A manifest cannot be read or is inconsistent.
    #[error("{path}: invalid manifest: {message}")]
    InvalidManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The vocabulary stored in a manifest or shard cannot be parsed.
    #[error("{path}: invalid vocabulary: {source}")]
    Vocab {
        /// The manifest or shard.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: asr_text::TextError,
    },
    /// Part manifests cannot be merged.
    #[error("cannot merge part manifests: {message}")]
    Merge {
        /// Why.
        message: String,
    },
}

impl ShardError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ShardError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn arrow(path: impl Into<PathBuf>, source: arrow_schema::ArrowError) -> Self {
        ShardError::Arrow {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ShardError::InvalidShard {
            path: path.into(),
            message: message.into(),
        }
    }
}
