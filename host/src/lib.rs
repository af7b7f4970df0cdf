//! kdprune: train students on pruned data sets with knowledge distillation.
//!
//! The library behind the `kdprune` binary. Data flows as plain values:
//! [`manifest`] (checked TOML) → [`data`] (train/test [`data::Dataset`]) → [`inputs`] (what
//! the methods asked for: [`teacher`] soft labels and embeddings, [`dynamics`] of a proxy, each
//! cached) → [`plugins`] (a pruning method scores or selects) → [`select`]
//! (kept indices) → [`train`] (a student with the distillation loss) →
//! [`experiment::results`] (append-only `results.jsonl`, `.npy` indices) → [`report`].
//! [`experiment::run`] drives a whole manifest; [`bench`] measures throughput.
//!
//! The library prints nothing and never exits the process; it logs through `tracing` and
//! returns [`Error`]s that name the file, field or plugin and what to do.

pub mod bench;
pub mod data;
pub mod dynamics;
pub mod experiment;
pub mod inputs;
pub mod manifest;
pub mod plugins;
pub mod progress;
pub mod report;
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
    Teacher(#[from] teacher::TeacherError),
    #[error(transparent)]
    Train(#[from] train::TrainError),
    #[error(transparent)]
    Dynamics(#[from] dynamics::DynamicsError),
    #[error(transparent)]
    Store(#[from] experiment::results::StoreError),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}
