//! Pooling over `[B, C, H, W]`: max and average with a square window and stride (no
//! padding), and global average pooling to `[B, C]`.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::{Layer, Mode};
use crate::train::onnx_export::{Attr, GraphBuilder};

/// A square window sliding over `[C, H, W]` with a stride, without padding.
#[derive(Debug, Clone, Copy)]
struct Window {
    in_shape: [usize; 3],
    kernel: usize,
    stride: usize,
}

impl Window {
    /// `(OH, OW)`.
    fn out_hw(&self) -> (usize, usize) {
        let [_, h, w] = self.in_shape;
        (
            (h - self.kernel) / self.stride + 1,
            (w - self.kernel) / self.stride + 1,
        )
    }

    fn output_shape(&self) -> Vec<usize> {
        let (oh, ow) = self.out_hw();
        vec![self.in_shape[0], oh, ow]
    }

    fn describe(&self, name: &str) -> String {
        format!("{name} {} s{}", self.kernel, self.stride)
    }

    fn onnx_node(&self, op: &str, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        let (k, s) = (self.kernel as i64, self.stride as i64);
        graph.node(
            op,
            &[input],
            prefix,
            &[
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![s, s])),
            ],
        )
    }
}

#[derive(Clone)]
pub struct MaxPool2d {
    window: Window,
    /// For each output value of the last training forward pass, the flat input position of
    /// its maximum; the buffer is reused from step to step.
    argmax: Vec<u32>,
    /// Whether `argmax` belongs to a training forward pass not yet gone back through.
    argmax_pending: bool,
}

impl MaxPool2d {
    pub fn new(in_shape: [usize; 3], kernel: usize, stride: usize) -> Self {
        Self {
            window: Window {
                in_shape,
                kernel,
                stride,
            },
            argmax: Vec::new(),
            argmax_pending: false,
        }
    }
}

/// Planes (one image's channel) per task.
const PLANES_PER_TASK: usize = 16;

/// The common 2×2 window with stride 2 over one plane `[H, W]` (`plane` starts at flat input
/// position `base`): output `[H/2, W/2]` and the position of each maximum, the first of equal
/// values winning, as in the general loop. Written as selects over the four values, which the
/// compiler keeps free of branches (which value wins is random).
fn max_pool_2x2(plane: &[f32], w: usize, base: usize, out: &mut [f32], at_out: &mut [u32]) {
    let ow = w / 2;
    for (oy, (out, at_out)) in out
        .chunks_exact_mut(ow)
        .zip(at_out.chunks_exact_mut(ow))
        .enumerate()
    {
        let top = &plane[2 * oy * w..][..2 * ow];
        let bottom = &plane[(2 * oy + 1) * w..][..2 * ow];
        let row_base = (base + 2 * oy * w) as u32;
        for (ox, ((o, at), (t, b))) in out
            .iter_mut()
            .zip(at_out.iter_mut())
            .zip(top.chunks_exact(2).zip(bottom.chunks_exact(2)))
            .enumerate()
        {
            let x = row_base + 2 * ox as u32;
            let (top_max, top_at) = if t[1] > t[0] {
                (t[1], x + 1)
            } else {
                (t[0], x)
            };
            let w = w as u32;
            let (bottom_max, bottom_at) = if b[1] > b[0] {
                (b[1], x + w + 1)
            } else {
                (b[0], x + w)
            };
            (*o, *at) = if bottom_max > top_max {
                (bottom_max, bottom_at)
            } else {
                (top_max, top_at)
            };
        }
    }
}

impl Layer for MaxPool2d {
    fn describe(&self) -> String {
        self.window.describe("maxpool")
    }
    fn output_shape(&self) -> Vec<usize> {
        self.window.output_shape()
    }
    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let b = x.shape()[0];
        let [c, h, w] = self.window.in_shape;
        let (k, s) = (self.window.kernel, self.window.stride);
        let (oh, ow) = self.window.out_hw();
        let x = x.as_standard_layout();
        let src = x.as_slice().expect("standard layout");
        assert!(
            u32::try_from(src.len()).is_ok(),
            "max pooling input of {} values: positions are kept as u32",
            src.len()
        );
        let outputs = b * c * oh * ow;
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[b, c, oh, ow]));
        if self.argmax.len() != outputs {
            self.argmax = vec![0; outputs];
        }
        let dst = y.as_slice_mut().expect("standard layout");
        let plane_out = oh * ow;
        dst.par_chunks_mut(plane_out * PLANES_PER_TASK)
            .zip(self.argmax.par_chunks_mut(plane_out * PLANES_PER_TASK))
            .enumerate()
            .for_each(|(task, (out, at_out))| {
                for (p, (out, at_out)) in out
                    .chunks_mut(plane_out)
                    .zip(at_out.chunks_mut(plane_out))
                    .enumerate()
                {
                    let base = (task * PLANES_PER_TASK + p) * h * w;
                    if k == 2 && s == 2 {
                        max_pool_2x2(&src[base..base + h * w], w, base, out, at_out);
                        continue;
                    }
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut best = f32::NEG_INFINITY;
                            let mut at = base;
                            for ky in 0..k {
                                let row = base + (oy * s + ky) * w + ox * s;
                                for (kx, &v) in src[row..row + k].iter().enumerate() {
                                    // Selects, not branches: which value wins is random.
                                    let better = v > best;
                                    best = if better { v } else { best };
                                    at = if better { row + kx } else { at };
                                }
                            }
                            out[oy * ow + ox] = best;
                            at_out[oy * ow + ox] = at as u32;
                        }
                    }
                }
            });
        self.argmax_pending = mode == Mode::Train;
        y
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        super::take_pending_forward(&mut self.argmax_pending);
        let [c, h, w] = self.window.in_shape;
        let mut dx = ArrayD::<f32>::zeros(IxDyn(&[grad.shape()[0], c, h, w]));
        let dst = dx.as_slice_mut().expect("standard layout");
        let grad = grad.as_standard_layout();
        let grad = grad.as_slice().expect("standard layout");
        assert_eq!(grad.len(), self.argmax.len(), "max pooling gradient shape");
        for (&at, &g) in self.argmax.iter().zip(grad) {
            dst[at as usize] += g;
        }
        dx
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        self.window.onnx_node("MaxPool", graph, input, prefix)
    }
}

#[derive(Clone)]
pub struct AvgPool2d {
    window: Window,
    batch: usize,
}

impl AvgPool2d {
    pub fn new(in_shape: [usize; 3], kernel: usize, stride: usize) -> Self {
        Self {
            window: Window {
                in_shape,
                kernel,
                stride,
            },
            batch: 0,
        }
    }
}

impl Layer for AvgPool2d {
    fn describe(&self) -> String {
        self.window.describe("avgpool")
    }
    fn output_shape(&self) -> Vec<usize> {
        self.window.output_shape()
    }
    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let b = x.shape()[0];
        let [c, h, w] = self.window.in_shape;
        let (k, s) = (self.window.kernel, self.window.stride);
        let (oh, ow) = self.window.out_hw();
        let x = x.as_standard_layout();
        let src = x.as_slice().expect("standard layout");
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[b, c, oh, ow]));
        let dst = y.as_slice_mut().expect("standard layout");
        let inv = 1.0 / (k * k) as f32;
        for plane in 0..b * c {
            let base = plane * h * w;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = 0.0;
                    for ky in 0..k {
                        for kx in 0..k {
                            sum += src[base + (oy * s + ky) * w + ox * s + kx];
                        }
                    }
                    dst[(plane * oh + oy) * ow + ox] = sum * inv;
                }
            }
        }
        self.batch = b;
        y
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let [c, h, w] = self.window.in_shape;
        let (k, s) = (self.window.kernel, self.window.stride);
        let (oh, ow) = self.window.out_hw();
        let mut dx = ArrayD::<f32>::zeros(IxDyn(&[self.batch, c, h, w]));
        let dst = dx.as_slice_mut().expect("standard layout");
        let grad = grad.as_standard_layout();
        let g = grad.as_slice().expect("standard layout");
        let inv = 1.0 / (k * k) as f32;
        for plane in 0..self.batch * c {
            let base = plane * h * w;
            for oy in 0..oh {
                for ox in 0..ow {
                    let v = g[(plane * oh + oy) * ow + ox] * inv;
                    for ky in 0..k {
                        for kx in 0..k {
                            dst[base + (oy * s + ky) * w + ox * s + kx] += v;
                        }
                    }
                }
            }
        }
        dx
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        self.window.onnx_node("AveragePool", graph, input, prefix)
    }
}

/// Mean over `H, W`: `[B, C, H, W]` → `[B, C]`.
#[derive(Clone)]
pub struct GlobalAvgPool {
    in_shape: [usize; 3],
    batch: usize,
}

impl GlobalAvgPool {
    pub fn new(in_shape: [usize; 3]) -> Self {
        Self { in_shape, batch: 0 }
    }
}

impl Layer for GlobalAvgPool {
    fn describe(&self) -> String {
        "gap".into()
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![self.in_shape[0]]
    }
    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let b = x.shape()[0];
        let [c, h, w] = self.in_shape;
        let x = x.as_standard_layout();
        let src = x.as_slice().expect("standard layout");
        let inv = 1.0 / (h * w) as f32;
        let y: Vec<f32> = src
            .chunks_exact(h * w)
            .map(|p| p.iter().sum::<f32>() * inv)
            .collect();
        self.batch = b;
        ArrayD::from_shape_vec(IxDyn(&[b, c]), y).expect("b * c values")
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let [c, h, w] = self.in_shape;
        let inv = 1.0 / (h * w) as f32;
        let grad = grad.as_standard_layout();
        let g = grad.as_slice().expect("standard layout");
        let mut dx = Vec::with_capacity(self.batch * c * h * w);
        for &v in g {
            dx.extend(std::iter::repeat_n(v * inv, h * w));
        }
        ArrayD::from_shape_vec(IxDyn(&[self.batch, c, h, w]), dx).expect("sizes match")
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        let pooled = graph.node(
            "GlobalAveragePool",
            &[input],
            &format!("{prefix}.pool"),
            &[],
        );
        graph.node("Flatten", &[&pooled], prefix, &[("axis", Attr::Int(1))])
    }
}
