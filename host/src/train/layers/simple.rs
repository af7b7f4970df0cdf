//! Layers without parameters: ReLU, flatten, dropout.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::layer::{Layer, Mode};
use crate::train::onnx_export::{Attr, GraphBuilder};

/// Element counts from which elementwise work is spread over the cores (below it, the
/// hand-off costs more than it saves).
const PARALLEL_LEN: usize = 1 << 16;

/// `max(x, 0)`, or nothing where the layer before applies it in its own passes
/// ([`Relu::absorbed`]).
#[derive(Clone)]
pub struct Relu {
    shape: Vec<usize>,
    /// The layer before took the ReLU over ([`Layer::absorb_relu`]): this one passes values
    /// and gradients through, and still exports as an ONNX `Relu`.
    absorbed: bool,
    /// 1 where the input of the last training forward pass was positive (the gradient
    /// passes), one byte per element: a quarter of the traffic of keeping the output. The
    /// buffer is reused from step to step.
    mask: Vec<u8>,
    /// Whether `mask` belongs to a training forward pass not yet gone back through.
    mask_pending: bool,
}

/// Elements per task when a ReLU is spread over the cores.
const RELU_CHUNK: usize = 1 << 14;

impl Relu {
    pub fn new(shape: Vec<usize>) -> Self {
        Self {
            shape,
            absorbed: false,
            mask: Vec::new(),
            mask_pending: false,
        }
    }
}

/// `values = max(values, 0)`, and `mask` (of the same length) 1 where a value stays.
fn relu_with_mask(values: &mut [f32], mask: &mut [u8]) {
    for (v, m) in values.iter_mut().zip(mask.iter_mut()) {
        *m = u8::from(*v > 0.0);
        *v = v.max(0.0);
    }
}

/// `grad` zeroed where `mask` is 0: a select rather than a conditional store, over plain
/// slices, so that the loop vectorises.
fn pass_where_kept(grad: &mut [f32], mask: &[u8]) {
    grad.iter_mut()
        .zip(mask)
        .for_each(|(g, &m)| *g = if m != 0 { *g } else { 0.0 });
}

impl Layer for Relu {
    fn describe(&self) -> String {
        "relu".into()
    }
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn is_relu(&self) -> bool {
        !self.absorbed
    }
    fn mark_absorbed(&mut self) {
        self.absorbed = true;
    }
    fn passes_through(&self) -> bool {
        self.absorbed
    }
    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        if self.absorbed {
            return x;
        }
        let mut x = super::layer::into_standard_layout(x);
        let parallel = x.len() >= PARALLEL_LEN;
        let values = x.as_slice_mut().expect("standard layout");
        if mode == Mode::Train {
            if self.mask.len() != values.len() {
                self.mask = vec![0; values.len()];
            }
            if parallel {
                values
                    .par_chunks_mut(RELU_CHUNK)
                    .zip(self.mask.par_chunks_mut(RELU_CHUNK))
                    .for_each(|(v, m)| relu_with_mask(v, m));
            } else {
                relu_with_mask(values, &mut self.mask);
            }
            self.mask_pending = true;
        } else if parallel {
            values
                .par_chunks_mut(RELU_CHUNK)
                .for_each(|v| v.iter_mut().for_each(|v| *v = v.max(0.0)));
        } else {
            values.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        x
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        if self.absorbed {
            return grad;
        }
        super::layer::take_pending_forward(&mut self.mask_pending);
        let mut grad = super::layer::into_standard_layout(grad);
        let g = grad.as_slice_mut().expect("standard layout");
        assert_eq!(g.len(), self.mask.len(), "relu gradient shape");
        // Inside a data-parallel shard the other core runs its own shard: splitting here
        // would hand it this shard's cache-cold chunks (the CNN ran 0.81–0.85× as fast).
        if g.len() >= PARALLEL_LEN && !crate::train::kernels::gemm::is_serial() {
            g.par_chunks_mut(RELU_CHUNK)
                .zip(self.mask.par_chunks(RELU_CHUNK))
                .for_each(|(g, m)| pass_where_kept(g, m));
        } else {
            pass_where_kept(g, &self.mask);
        }
        grad
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        graph.node("Relu", &[input], prefix, &[])
    }
}

/// `[B, ...]` → `[B, prod(...)]`.
#[derive(Clone)]
pub struct Flatten {
    input_shape: Vec<usize>,
}

impl Flatten {
    pub fn new(input_shape: Vec<usize>) -> Self {
        Self { input_shape }
    }
}

impl Layer for Flatten {
    fn describe(&self) -> String {
        "flatten".into()
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![self.input_shape.iter().product()]
    }
    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let b = x.shape()[0];
        let d = self.input_shape.iter().product();
        x.into_shape_with_order(IxDyn(&[b, d]))
            .expect("standard layout")
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let b = grad.shape()[0];
        let mut shape = vec![b];
        shape.extend(&self.input_shape);
        grad.into_shape_with_order(IxDyn(&shape))
            .expect("standard layout")
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        graph.node("Flatten", &[input], prefix, &[("axis", Attr::Int(1))])
    }
}

/// Inverted dropout: in training, zeroes each value with probability `p` and scales the rest
/// by `1 / (1 - p)`; identity in evaluation.
#[derive(Clone)]
pub struct Dropout {
    p: f32,
    shape: Vec<usize>,
    rng: ChaCha8Rng,
    mask: Option<ArrayD<f32>>,
}

impl Dropout {
    pub fn new(p: f32, shape: Vec<usize>, seed: u64) -> Self {
        Self {
            p,
            shape,
            rng: ChaCha8Rng::seed_from_u64(seed),
            mask: None,
        }
    }
}

impl Layer for Dropout {
    fn replicate(&self, shard: u64) -> Box<dyn Layer> {
        let mut copy = self.clone();
        // Each shard of a batch draws its own masks, from its own stream of the same seed.
        copy.rng.set_stream(shard);
        Box::new(copy)
    }
    fn describe(&self) -> String {
        format!("dropout {}", self.p)
    }
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn forward(&mut self, mut x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        if mode == Mode::Eval || self.p == 0.0 {
            return x;
        }
        let scale = 1.0 / (1.0 - self.p);
        let p = self.p;
        let rng = &mut self.rng;
        let mask = ArrayD::from_shape_simple_fn(x.raw_dim(), || {
            if rng.gen::<f32>() < p {
                0.0
            } else {
                scale
            }
        });
        x *= &mask;
        self.mask = Some(mask);
        x
    }
    fn backward(&mut self, mut grad: ArrayD<f32>) -> ArrayD<f32> {
        if let Some(mask) = self.mask.take() {
            grad *= &mask;
        }
        grad
    }
    fn to_onnx(&self, _graph: &mut GraphBuilder, input: &str, _prefix: &str) -> String {
        // Identity at inference.
        input.to_string()
    }
}

/// `dropout p`: its masks are drawn from the network's seed and the layer's place.
pub(super) fn dropout_from_spec(p: f32, site: &super::layer::Site<'_>) -> Box<dyn Layer> {
    Box::new(Dropout::new(
        p,
        site.shape.to_vec(),
        site.seed ^ ((site.index as u64 + 1) * 0x9E37_79B9),
    ))
}
