//! Layers with forward and backward passes, one file per kind, the `Layer` trait in
//! [`layer`]; the spec language that declares them in [`spec`], and [`build`], where a spec
//! becomes layers (each kind's `from_spec` in its file).
//!
//! Every layer takes and returns a batch `[B, ...]` as an owned `ArrayD<f32>` (standard
//! layout). A layer keeps what its backward pass needs (its input, a mask, argmax positions)
//! from the last forward pass in training mode. Parameters are `ArrayD<f32>` with a gradient of
//! the same shape, set by each `backward`.

pub mod build;
mod conv;
mod conv_direct;
mod dense;
pub mod layer;
mod norm;
mod pool;
mod residual;
mod simple;
pub mod spec;

pub use conv::Conv2d;
pub use dense::Dense;
pub use layer::{CloneLayer, Layer, Mode, ParamRef, SharedTensor, Site, WeightFactors};
pub use norm::BatchNorm;
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d};
pub use residual::Residual;
pub use simple::{Dropout, Flatten, Relu};
