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
}
