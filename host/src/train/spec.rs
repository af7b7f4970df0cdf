//! The student and how to train it (`[student]`, checked): its layers (the spec language is
//! [`super::layers::spec`]), epochs, optimiser, schedule, augmentation, initialisation and
//! precision. `[dynamics]` and `[teacher] train` train with the same type.

use serde::Serialize;

use super::augment::Augment;
pub use super::layers::spec::{mlp, parse_layer, LayerSpec};
use super::optim::{OptimizerSpec, ScheduleSpec};

/// How a student's weights are first drawn (`[student] init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// He-uniform: weights `U(±sqrt(6/fan_in))`, zero biases (kdprune's default).
    #[default]
    He,
    /// PyTorch's `nn.Linear` / `nn.Conv2d` default: weights and biases `U(±1/sqrt(fan_in))`.
    Torch,
}

/// The student and how to train it.
#[derive(Debug, Clone, Serialize)]
pub struct StudentSpec {
    /// The body; kdprune appends `dense num_classes`.
    pub layers: Vec<LayerSpec>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub optimizer: OptimizerSpec,
    pub weight_decay: f32,
    pub schedule: ScheduleSpec,
    pub warmup_epochs: usize,
    pub clip_grad_norm: Option<f32>,
    pub augment: Augment,
    /// How the weights are first drawn.
    #[serde(skip_serializing_if = "is_default_init")]
    pub init: Init,
    /// Of the training steps' products (f32 unless `"bf16"`, on CPUs with AVX512-BF16).
    #[serde(skip_serializing_if = "crate::train::kernels::gemm::Precision::is_f32")]
    pub precision: crate::train::kernels::gemm::Precision,
    /// Save each cell's student as safetensors and ONNX under `<output>/students/`.
    pub save: bool,
    /// Pruning during training ([`super::infobatch`]); `None`: every example every epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infobatch: Option<super::infobatch::InfoBatchSpec>,
}

fn is_default_init(init: &Init) -> bool {
    *init == Init::He
}
