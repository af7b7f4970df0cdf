//! The kernels floor of the trainer: products, weight gradients and elementwise work over
//! plain slices and ndarray views, and the instruction set they run on. Nothing here knows
//! layers, networks or losses (the model floor above imports these; these import nothing of
//! it).
//!
//! [`isa`] picks AVX-512, AVX2 or none; [`gemm`] splits products across the cores
//! ([`parallel`] says when not to), [`gemm_in_place`] reads narrow operands in place,
//! [`gemm_bf16`] is the bf16 product; [`weight_grad`] sums dense weight gradients over shards
//! with the SGD step fused, into the [`panels`] layout; [`elementwise`] runs fixed chunks of
//! every parameter in one parallel region; [`subnormal`] flushes denormals.

pub mod elementwise;
pub mod gemm;
pub mod gemm_bf16;
pub(crate) mod gemm_in_place;
pub mod isa;
pub mod panels;
pub mod parallel;
pub mod subnormal;
pub mod weight_grad;
