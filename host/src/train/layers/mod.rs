//! Layers with forward and backward passes, one file per kind, the `Layer` trait in
//! [`layer`]; the spec language that declares them is [`crate::train::spec`].
//!
//! Every layer takes and returns a batch `[B, ...]` as an owned `ArrayD<f32>` (standard
//! layout). A layer keeps what its backward pass needs (its input, a mask, argmax positions)
//! from the last forward pass in training mode. Parameters are `ArrayD<f32>` with a gradient of
//! the same shape, set by each `backward`.

mod conv;
mod conv_direct;
mod dense;
pub mod layer;
mod norm;
mod pool;
mod simple;

pub use conv::Conv2d;
pub use dense::Dense;
pub use layer::{CloneLayer, Layer, Mode, ParamRef, SharedTensor, WeightFactors};
pub use norm::BatchNorm;
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d};
pub use simple::{Dropout, Flatten, Relu, Residual};
