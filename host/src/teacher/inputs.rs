//! The teacher's inputs for pruning methods ([`crate::inputs::InputKind::Teacher`]): its
//! soft labels and its embedding, over the training set.

use ndarray::Array2;

use super::{Teacher, TeacherError, TeacherLogits};
use crate::data::Dataset;
use crate::inputs::{InputKind, InputName, Provider};
use crate::tensor::{Elements, HostTensor};

/// The first teacher of a run, made ready.
pub struct TeacherInputs<'t, 'a> {
    /// The model, for its embedding (`None` for an ensemble, which has none).
    pub live: Option<&'t mut Teacher<'a>>,
    /// Its logits on the training set, `[N, C]`.
    pub train: &'t TeacherLogits,
    /// The training set as read, `[N, ...]`.
    pub set: &'t Dataset,
}

impl Provider for TeacherInputs<'_, '_> {
    type Error = TeacherError;
    const KIND: InputKind = InputKind::Teacher;

    fn provide(self, wanted: &[InputName]) -> Result<Vec<(InputName, HostTensor)>, TeacherError> {
        let mut live = self.live;
        let mut out = Vec::new();
        for &name in wanted {
            let tensor = match name {
                InputName::SoftLabels => soft_labels_tensor(&self.train.probabilities(1.0)),
                InputName::TeacherEmbedding => match live.as_deref_mut() {
                    Some(teacher) => teacher.embedding(self.set)?,
                    None => {
                        return Err(TeacherError::Runtime(
                            "an ensemble has no embedding; make the first teacher an ONNX model with embedding = \"<tensor name>\"".into(),
                        ))
                    }
                },
                other => unreachable!("{other} is not the teacher's"),
            };
            out.push((name, tensor));
        }
        Ok(out)
    }
}

/// The soft labels input from the teacher's probabilities at τ = 1, `[N, C]`.
fn soft_labels_tensor(probabilities: &Array2<f32>) -> HostTensor {
    let (n, c) = probabilities.dim();
    HostTensor::new(
        vec![n as u64, c as u64],
        Elements::F32(probabilities.iter().copied().collect()),
    )
    .expect("[N, C]")
}
