//! What training can fail with.

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training data: {0}")]
    Shape(String),
    #[error("[student] layers: {0}")]
    Model(String),
    #[error("online teacher: {0}")]
    Teacher(String),
    #[error("training diverged at epoch {epoch} (loss {loss}); {advice}")]
    Diverged {
        epoch: usize,
        loss: f32,
        /// What to change, given what is already set.
        advice: String,
    },
}
