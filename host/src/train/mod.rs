//! The student trainer on ndarray: networks declared by layer specs ([`spec`], [`layers`],
//! [`network`]), the distillation loss ([`loss`]), optimisers and schedules ([`optim`]),
//! augmentation ([`augment`]), the loop ([`fit`]), evaluation, and export
//! ([`onnx_export`], safetensors in [`network`]).
//!
//! Does not own which examples are kept or where soft labels come from.
//!
//! Two floors: [`kernels`] (products, weight gradients, elementwise work, the instruction
//! set) below the model floor (everything else here), which imports the kernels and never the
//! other way. This file only declares and re-exports.

pub mod alpha_search;
pub mod augment;
pub mod error;
pub mod fit;
pub mod infobatch;
pub mod kd;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod memory;
pub mod network;
pub mod onnx_export;
pub mod optim;
pub mod profile;
pub mod spec;

pub use error::TrainError;
pub use fit::{evaluate, lend, train, train_observed, EpochLog, Observer, OnlineTeacher, TrainSet};
pub use kd::{Alpha, Kd, Temperature};
pub use layers::Mode;
pub use network::Network;
pub use spec::StudentSpec;
