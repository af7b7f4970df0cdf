//! Layers without parameters (ReLU, flatten, dropout) and the residual block.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::layer::{backward_timed, forward_timed, Layer, Mode, ParamRef};
use crate::train::onnx_export::{Attr, GraphBuilder};
use crate::train::profile::{self, Pass};

/// Element counts from which elementwise work is spread over the cores (below it, the
/// hand-off costs more than it saves).
const PARALLEL_LEN: usize = 1 << 16;

/// `max(x, 0)`.
#[derive(Clone)]
pub struct Relu {
    shape: Vec<usize>,
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

impl Layer for Relu {
    fn describe(&self) -> String {
        "relu".into()
    }
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
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
        super::layer::take_pending_forward(&mut self.mask_pending);
        let mut grad = super::layer::into_standard_layout(grad);
        let g = grad.as_slice_mut().expect("standard layout");
        assert_eq!(g.len(), self.mask.len(), "relu gradient shape");
        // A select rather than a conditional store, over plain slices: the loop vectorises.
        g.iter_mut()
            .zip(&self.mask)
            .for_each(|(g, &m)| *g = if m != 0 { *g } else { 0.0 });
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

/// `body(x) + shortcut(x)`; an empty shortcut is the identity.
#[derive(Clone)]
pub struct Residual {
    pub body: Vec<Box<dyn Layer>>,
    pub shortcut: Vec<Box<dyn Layer>>,
    label: String,
}

/// `dropout p`: its masks are drawn from the network's seed and the layer's place.
pub(super) fn dropout_from_spec(p: f32, site: &super::layer::Site<'_>) -> Box<dyn Layer> {
    Box::new(Dropout::new(
        p,
        site.shape.to_vec(),
        site.seed ^ ((site.index as u64 + 1) * 0x9E37_79B9),
    ))
}

/// `res out sS`: ResNet's basic block (conv 3×3 stride S, BN, ReLU, conv 3×3, BN; a 1×1
/// conv and BN on the shortcut when the shape changes), then its ReLU.
pub(super) fn residual_from_spec(
    out: usize,
    stride: usize,
    site: &mut super::layer::Site<'_>,
) -> Result<Vec<Box<dyn Layer>>, String> {
    use super::conv::Conv2d;
    use super::norm::BatchNorm;
    let in_shape = site.image()?;
    let rng = &mut *site.rng;
    let conv1 = Conv2d::new(in_shape, out, 3, stride, 1, false, rng);
    let mid = conv1.output_shape();
    let mid3 = [mid[0], mid[1], mid[2]];
    let body: Vec<Box<dyn Layer>> = vec![
        Box::new(conv1),
        Box::new(BatchNorm::new(mid.clone())),
        Box::new(Relu::new(mid.clone())),
        Box::new(Conv2d::new(mid3, out, 3, 1, 1, false, rng)),
        Box::new(BatchNorm::new(mid.clone())),
    ];
    let shortcut: Vec<Box<dyn Layer>> = if stride != 1 || in_shape[0] != out {
        vec![
            Box::new(Conv2d::new(in_shape, out, 1, stride, 0, false, rng)),
            Box::new(BatchNorm::new(mid)),
        ]
    } else {
        Vec::new()
    };
    let block = Residual::new(format!("res {out} s{stride}"), body, shortcut);
    let relu = Relu::new(block.output_shape());
    Ok(vec![Box::new(block), Box::new(relu)])
}

impl Residual {
    pub fn new(label: String, body: Vec<Box<dyn Layer>>, shortcut: Vec<Box<dyn Layer>>) -> Self {
        Self {
            body,
            shortcut,
            label,
        }
    }
}

fn run_forward(layers: &mut [Box<dyn Layer>], mut x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
    for l in layers.iter_mut() {
        x = forward_timed(l, x, mode);
    }
    x
}

fn run_backward(layers: &mut [Box<dyn Layer>], mut g: ArrayD<f32>) -> ArrayD<f32> {
    for l in layers.iter_mut().rev() {
        g = backward_timed(l, g);
    }
    g
}

/// The kind a residual block's own work (the copy for the shortcut and the add) is timed as.
const RESIDUAL_KIND: &str = "residual copy and add";

impl Layer for Residual {
    fn replicate(&self, shard: u64) -> Box<dyn Layer> {
        Box::new(Self {
            body: self.body.iter().map(|l| l.replicate(shard)).collect(),
            shortcut: self.shortcut.iter().map(|l| l.replicate(shard)).collect(),
            label: self.label.clone(),
        })
    }
    fn describe(&self) -> String {
        self.label.clone()
    }
    fn output_shape(&self) -> Vec<usize> {
        self.body
            .last()
            .map(|l| l.output_shape())
            .unwrap_or_default()
    }
    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let copy = profile::time(|| RESIDUAL_KIND.into(), Pass::Forward, || x.clone());
        let short = run_forward(&mut self.shortcut, copy, mode);
        let mut y = run_forward(&mut self.body, x, mode);
        profile::time(|| RESIDUAL_KIND.into(), Pass::Forward, || y += &short);
        y
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let copy = profile::time(|| RESIDUAL_KIND.into(), Pass::Backward, || grad.clone());
        let g_short = run_backward(&mut self.shortcut, copy);
        let mut g = run_backward(&mut self.body, grad);
        profile::time(|| RESIDUAL_KIND.into(), Pass::Backward, || g += &g_short);
        g
    }
    fn params(&mut self) -> Vec<ParamRef<'_>> {
        self.body
            .iter_mut()
            .chain(self.shortcut.iter_mut())
            .flat_map(|l| l.params())
            .collect()
    }
    fn children(&self) -> Vec<&dyn Layer> {
        self.body
            .iter()
            .chain(&self.shortcut)
            .map(|l| l.as_ref())
            .collect()
    }
    fn children_mut(&mut self) -> Vec<&mut Box<dyn Layer>> {
        self.body
            .iter_mut()
            .chain(self.shortcut.iter_mut())
            .collect()
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        let mut body = input.to_string();
        for (i, l) in self.body.iter().enumerate() {
            body = l.to_onnx(graph, &body, &format!("{prefix}.body.{i}"));
        }
        let mut short = input.to_string();
        for (i, l) in self.shortcut.iter().enumerate() {
            short = l.to_onnx(graph, &short, &format!("{prefix}.shortcut.{i}"));
        }
        graph.node("Add", &[&body, &short], prefix, &[])
    }
}
