//! kdprune: train students on pruned data sets with knowledge distillation.
//!
//! The library behind the `kdprune` binary. Data flows as plain values:
//! [`manifest`] (checked TOML) → [`data`] (train/test [`data::Dataset`]) → [`inputs`] (what
//! the methods asked for: [`teacher`] soft labels and embeddings, [`dynamics`] of a proxy, each
//! cached) → [`plugins`] (a pruning method scores or selects) → [`select`]
//! (kept indices) → [`train`] (a student with the distillation loss) →
//! [`results`] (append-only `results.jsonl`, `.npy` indices) → [`report`].
//! [`experiment::run`] drives a whole manifest; [`bench`] measures throughput.
//!
//! The library prints nothing and never exits the process; it logs through `tracing` and
//! returns [`Error`]s that name the file, field or plugin and what to do.

pub mod bench;
pub mod data;
pub mod dynamics;
pub mod experiment;
pub mod hash;
pub mod inputs;
pub mod manifest;
pub mod plugins;
pub mod progress;
pub mod report;
pub mod results;
pub mod select;
pub mod shard;
pub mod suggest;
pub mod teacher;
pub mod tensor;
pub mod train;

use std::path::PathBuf;

/// A third-party error message on one line (some parsers draw multi-line diagrams).
pub fn one_line(message: impl std::fmt::Display) -> String {
    message
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// An I/O error as one line for the user, with what to do when the disk is full.
pub fn io_message(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::StorageFull {
        format!("{e}; results already written are intact: free space and run again to resume")
    } else {
        e.to_string()
    }
}

/// Any error of a kdprune operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Plugin(#[from] plugins::PluginError),
    #[error(transparent)]
    Teacher(teacher::TeacherError),
    #[error(transparent)]
    Train(#[from] train::TrainError),
    #[error(transparent)]
    Dynamics(dynamics::DynamicsError),
    #[error(transparent)]
    Store(#[from] results::StoreError),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

impl From<dynamics::DynamicsError> for Error {
    /// A proxy that fails to train is a training error, whoever trained it.
    fn from(e: dynamics::DynamicsError) -> Self {
        match e {
            dynamics::DynamicsError::Train(t) => Error::Train(t),
            other => Error::Dynamics(other),
        }
    }
}

impl From<teacher::TeacherError> for Error {
    /// A teacher kdprune trains fails as training or data does; anything else is the teacher's.
    fn from(e: teacher::TeacherError) -> Self {
        match e {
            teacher::TeacherError::Train(t) => Error::Train(t),
            teacher::TeacherError::Data(d) => Error::Data(d),
            other => Error::Teacher(other),
        }
    }
}

impl From<report::ReportError> for Error {
    fn from(e: report::ReportError) -> Self {
        let report::ReportError::Io { path, message } = e;
        Error::Io { path, message }
    }
}
