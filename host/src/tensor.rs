//! Owned, typed tensors and the row-wise helpers every stage shares (softmax, argmax): what the
//! input providers compute, the caches store and the plugins borrow (as
//! `kdprune_plugin_api::Tensor`). Owns the element storage and the conversions to
//! and from bytes; does not own what a tensor means (the providers in [`crate::inputs`] do).

use abi_stable::nonexhaustive_enum::NonExhaustive;
use abi_stable::std_types::{RSlice, RStr};
use half::f16;
use kdprune_plugin_api::{DType, Tensor};

/// Elements of one dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    F32(Vec<f32>),
    F16(Vec<f16>),
    U8(Vec<u8>),
    U32(Vec<u32>),
}

impl Elements {
    pub fn dtype(&self) -> DType {
        match self {
            Elements::F32(_) => DType::F32,
            Elements::F16(_) => DType::F16,
            Elements::U8(_) => DType::U8,
            Elements::U32(_) => DType::U32,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Elements::F32(v) => v.len(),
            Elements::F16(v) => v.len(),
            Elements::U8(v) => v.len(),
            Elements::U32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as little-endian bytes (this host is little-endian: x86-64 or AArch64),
    /// borrowed, so aligned for the dtype.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Elements::F32(v) => bytemuck::cast_slice(v),
            Elements::F16(v) => bytemuck::cast_slice(v),
            Elements::U8(v) => v,
            Elements::U32(v) => bytemuck::cast_slice(v),
        }
    }

    /// Elements of `dtype` read from little-endian `bytes` (copied, so any alignment works).
    pub fn from_bytes(dtype: DType, bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return None;
        }
        Some(match dtype {
            DType::F32 => Elements::F32(bytemuck::pod_collect_to_vec(bytes)),
            DType::F16 => Elements::F16(bytemuck::pod_collect_to_vec(bytes)),
            DType::U8 => Elements::U8(bytes.to_vec()),
            DType::U32 => Elements::U32(bytemuck::pod_collect_to_vec(bytes)),
            _ => return None,
        })
    }

    /// Every element as f32 (f16 widened exactly).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Elements::F32(v) => v.clone(),
            Elements::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Elements::U8(v) => v.iter().map(|&x| x as f32).collect(),
            Elements::U32(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

/// A tensor with its shape; `shape.iter().product() == elements.len()` (checked by
/// [`HostTensor::new`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    shape: Vec<u64>,
    elements: Elements,
}

impl HostTensor {
    /// `None` when the shape does not hold the elements.
    pub fn new(shape: Vec<u64>, elements: Elements) -> Option<Self> {
        (shape.iter().product::<u64>() as usize == elements.len())
            .then_some(Self { shape, elements })
    }

    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    pub fn elements(&self) -> &Elements {
        &self.elements
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        self.elements.bytes().len()
    }

    /// The borrowed view a plugin receives under `name`.
    pub fn view<'a>(&'a self, name: &'a str) -> Tensor<'a> {
        Tensor {
            name: RStr::from_str(name),
            dtype: NonExhaustive::new(self.elements.dtype()),
            shape: RSlice::from_slice(&self.shape),
            bytes: RSlice::from_slice(self.elements.bytes()),
        }
    }
}

/// Row-wise `softmax(x / tau)` of `x` `[N, C]`.
pub fn softmax_rows(x: ndarray::ArrayView2<'_, f32>, tau: f32) -> ndarray::Array2<f32> {
    let mut out = x.to_owned();
    for mut row in out.rows_mut() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = ((*v - max) / tau).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
    out
}

/// The index of the largest value of `row` (the first, on ties; 0 when empty).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_round_trip_through_the_plugin_api() {
        let t = HostTensor::new(
            vec![2, 2],
            Elements::F16(vec![
                f16::from_f32(0.5),
                f16::ONE,
                f16::ZERO,
                f16::from_f32(-2.0),
            ]),
        )
        .unwrap();
        let view = t.view("dynamics/pass/loss");
        assert_eq!(view.dims::<2>().unwrap(), [2, 2]);
        assert_eq!(view.to_f32().unwrap(), vec![0.5, 1.0, 0.0, -2.0]);
        assert!(view.f32().is_err(), "an f16 tensor is not readable as f32");
        let back = Elements::from_bytes(DType::F16, t.elements().bytes()).unwrap();
        assert_eq!(&back, t.elements());
        assert!(HostTensor::new(vec![3], Elements::U8(vec![1, 2])).is_none());
    }
}
