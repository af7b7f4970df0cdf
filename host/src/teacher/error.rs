//! What making a teacher ready can fail with.

use std::path::PathBuf;

use crate::plugins::PluginError;

#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    #[error("{0}")]
    Runtime(String),
    #[error("{model}: {message}")]
    Model { model: PathBuf, message: String },
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("{path}: soft-label cache: {message}")]
    Cache { path: PathBuf, message: String },
    /// A teacher kdprune trains (`teacher::trained`) failed to train.
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    /// An output that is no score (NaN or +inf), in the batch starting at `start` when known.
    #[error("teacher {teacher} output {value}; check its model and [teacher] preprocess{}", start.map(|s| format!(" (batch starting at example {s})")).unwrap_or_default())]
    NotAScore {
        teacher: String,
        value: f32,
        start: Option<usize>,
    },
}
