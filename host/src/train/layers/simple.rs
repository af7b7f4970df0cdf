//! Layers without parameters (ReLU, flatten, dropout) and the residual block.

use ndarray::{ArrayD, IxDyn, Zip};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Layer, Mode, ParamRef};
use crate::train::onnx_export::{Attr, GraphBuilder};

/// Element counts from which elementwise work is spread over the cores (below it, the
/// hand-off costs more than it saves).
const PARALLEL_LEN: usize = 1 << 16;

/// `max(x, 0)`.
#[derive(Clone)]
pub struct Relu {
    shape: Vec<usize>,
    /// The output of the last training forward pass (positive where the gradient passes).
    output: Option<ArrayD<f32>>,
}

impl Relu {
    pub fn new(shape: Vec<usize>) -> Self {
        Self {
            shape,
            output: None,
        }
    }
}

impl Layer for Relu {
    fn describe(&self) -> String {
        "relu".into()
    }
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn forward(&mut self, mut x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        if x.len() >= PARALLEL_LEN {
            x.par_mapv_inplace(|v| v.max(0.0));
        } else if let Some(values) = x.as_slice_mut() {
            values.iter_mut().for_each(|v| *v = v.max(0.0));
        } else {
            x.mapv_inplace(|v| v.max(0.0));
        }
        if mode == Mode::Train {
            self.output = Some(x.clone());
        }
        x
    }
    fn backward(&mut self, mut grad: ArrayD<f32>) -> ArrayD<f32> {
        let out = self
            .output
            .take()
            .expect("backward after a training forward pass");
        // A select rather than a conditional store, over plain slices: the loop vectorises.
        let pass = |g: &mut f32, o: f32| *g = if o > 0.0 { *g } else { 0.0 };
        match (grad.as_slice_mut(), out.as_slice()) {
            (Some(g), Some(o)) => g.iter_mut().zip(o).for_each(|(g, &o)| pass(g, o)),
            _ => Zip::from(&mut grad).and(&out).for_each(|g, &o| pass(g, o)),
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

/// `body(x) + shortcut(x)`; an empty shortcut is the identity.
#[derive(Clone)]
pub struct Residual {
    pub body: Vec<Box<dyn Layer>>,
    pub shortcut: Vec<Box<dyn Layer>>,
    label: String,
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
        x = l.forward(x, mode);
    }
    x
}

fn run_backward(layers: &mut [Box<dyn Layer>], mut g: ArrayD<f32>) -> ArrayD<f32> {
    for l in layers.iter_mut().rev() {
        g = l.backward(g);
    }
    g
}

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
        let short = run_forward(&mut self.shortcut, x.clone(), mode);
        let mut y = run_forward(&mut self.body, x, mode);
        y += &short;
        y
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let g_short = run_backward(&mut self.shortcut, grad.clone());
        let mut g = run_backward(&mut self.body, grad);
        g += &g_short;
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
