//! Batch normalisation over the channel axis: `[B, C]` or `[B, C, H, W]`.
//!
//! Training: batch mean and biased variance per channel; running statistics updated with
//! momentum 0.1 (running variance unbiased, as PyTorch). Evaluation: running statistics.
//! A ReLU right after it is applied in its own passes ([`Layer::absorb_relu`]): its output
//! pass clamps, and its backward pass masks the gradient where `x̂·γ + β ≤ 0`, recomputed from
//! the `x̂` it keeps, so the pair costs the passes of batch norm alone, with the same bits.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::layer::{Layer, Mode, ParamRef};
use crate::train::onnx_export::{Attr, GraphBuilder};

const EPS: f32 = 1e-5;
const MOMENTUM: f32 = 0.1;

#[derive(Clone)]
pub struct BatchNorm {
    shape: Vec<usize>,
    gamma: ArrayD<f32>,
    beta: ArrayD<f32>,
    ggamma: ArrayD<f32>,
    gbeta: ArrayD<f32>,
    running_mean: ArrayD<f32>,
    running_var: ArrayD<f32>,
    /// Normalised input `[B, C, ...]` of the last training pass (the buffer is reused from
    /// step to step), and its per-channel `1 / sqrt(var + eps)`.
    xhat: Vec<f32>,
    inv_std: Vec<f32>,
    /// Whether `xhat` belongs to a training forward pass not yet gone back through.
    xhat_pending: bool,
    /// The ReLU after it is applied here.
    relu: bool,
}

/// Sums in eight lanes, added at the end: the loop vectorises, and the order (so the result)
/// depends on the length only.
fn lane_sum(values: &[f32]) -> f32 {
    lane_fold(values, values, |v, _| v)
}

/// `Σ (v − mean)²`, in lanes as [`lane_sum`].
fn lane_sum_squared_deviation(values: &[f32], mean: f32) -> f32 {
    lane_fold(values, values, |v, _| (v - mean) * (v - mean))
}

/// `Σ a·b`, in lanes as [`lane_sum`].
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    lane_fold(a, b, |x, y| x * y)
}

fn lane_fold(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| term(x, y))
        .sum();
    for (xs, ys) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            acc[lane] += term(xs[lane], ys[lane]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl BatchNorm {
    /// `shape`: one example's shape, `[C]` or `[C, H, W]`.
    pub fn new(shape: Vec<usize>) -> Self {
        let c = shape[0];
        let ones = ArrayD::from_elem(IxDyn(&[c]), 1.0f32);
        let zeros = ArrayD::zeros(IxDyn(&[c]));
        Self {
            shape,
            gamma: ones.clone(),
            beta: zeros.clone(),
            ggamma: zeros.clone(),
            gbeta: zeros.clone(),
            running_mean: zeros,
            running_var: ones,
            xhat: Vec::new(),
            inv_std: Vec::new(),
            xhat_pending: false,
            relu: false,
        }
    }

    fn spatial(&self) -> usize {
        self.shape[1..].iter().product()
    }
}

impl Layer for BatchNorm {
    fn couples_examples(&self) -> bool {
        true
    }
    fn has_params(&self) -> bool {
        true
    }
    fn absorb_relu(&mut self) -> bool {
        self.relu = true;
        true
    }
    fn describe(&self) -> String {
        "bn".into()
    }
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let b = x.shape()[0];
        let c = self.shape[0];
        let hw = self.spatial();
        let mut x = super::layer::into_standard_layout(x);
        let data = x.as_slice_mut().expect("standard layout");
        assert_eq!(data.len(), b * c * hw, "batch norm input shape");
        let gamma = self.gamma.as_slice().expect("contiguous");
        let beta = self.beta.as_slice().expect("contiguous");
        let relu = self.relu;
        match mode {
            Mode::Eval => {
                let rm = self.running_mean.as_slice().expect("contiguous");
                let rv = self.running_var.as_slice().expect("contiguous");
                let inv_std: Vec<f32> = rv.iter().map(|v| 1.0 / (v + EPS).sqrt()).collect();
                data.par_chunks_mut(c * hw).for_each(|image| {
                    for (ch, plane) in image.chunks_exact_mut(hw).enumerate() {
                        let (scale, shift) = (inv_std[ch] * gamma[ch], beta[ch]);
                        let (mean, scale) = (rm[ch], scale);
                        if relu {
                            plane
                                .iter_mut()
                                .for_each(|v| *v = ((*v - mean) * scale + shift).max(0.0));
                        } else {
                            plane
                                .iter_mut()
                                .for_each(|v| *v = (*v - mean) * scale + shift);
                        }
                    }
                });
            }
            Mode::Train => {
                let n = (b * hw) as f32;
                let planes =
                    |ch: usize| (0..b).map(move |bi| (bi * c + ch) * hw..(bi * c + ch + 1) * hw);
                let data_read = &*data;
                // Per channel, in a fixed order (so the same on any number of threads): the
                // mean, then the mean squared deviation from it.
                let stats: Vec<(f32, f32)> = (0..c)
                    .into_par_iter()
                    .map(|ch| {
                        let mean = planes(ch).map(|r| lane_sum(&data_read[r])).sum::<f32>() / n;
                        let var = planes(ch)
                            .map(|r| lane_sum_squared_deviation(&data_read[r], mean))
                            .sum::<f32>()
                            / n;
                        (mean, var)
                    })
                    .collect();
                let inv_std: Vec<f32> = stats.iter().map(|(_, v)| 1.0 / (v + EPS).sqrt()).collect();
                if self.xhat.len() != data.len() {
                    self.xhat = vec![0.0; data.len()];
                }
                data.par_chunks_mut(c * hw)
                    .zip(self.xhat.par_chunks_mut(c * hw))
                    .for_each(|(image, image_xhat)| {
                        for (ch, (plane, plane_xhat)) in image
                            .chunks_exact_mut(hw)
                            .zip(image_xhat.chunks_exact_mut(hw))
                            .enumerate()
                        {
                            let (mean, inv) = (stats[ch].0, inv_std[ch]);
                            let (g, b) = (gamma[ch], beta[ch]);
                            let pairs = plane.iter_mut().zip(plane_xhat);
                            if relu {
                                pairs.for_each(|(v, xh)| {
                                    *xh = (*v - mean) * inv;
                                    *v = (*xh * g + b).max(0.0);
                                });
                            } else {
                                pairs.for_each(|(v, xh)| {
                                    *xh = (*v - mean) * inv;
                                    *v = *xh * g + b;
                                });
                            }
                        }
                    });
                let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
                let rm = self.running_mean.as_slice_mut().expect("contiguous");
                let rv = self.running_var.as_slice_mut().expect("contiguous");
                for (ch, &(mean, var)) in stats.iter().enumerate() {
                    rm[ch] = (1.0 - MOMENTUM) * rm[ch] + MOMENTUM * mean;
                    rv[ch] = (1.0 - MOMENTUM) * rv[ch] + MOMENTUM * var * unbias;
                }
                self.inv_std = inv_std;
            }
        }
        self.xhat_pending = mode == Mode::Train;
        x
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        super::layer::take_pending_forward(&mut self.xhat_pending);
        let b = grad.shape()[0];
        let c = self.shape[0];
        let hw = self.spatial();
        let n = (b * hw) as f32;
        let mut grad = super::layer::into_standard_layout(grad);
        let g = grad.as_slice_mut().expect("standard layout");
        assert_eq!(g.len(), self.xhat.len(), "batch norm gradient shape");
        let xhat = &self.xhat;
        let g_read = &*g;
        let gamma = self.gamma.as_slice().expect("contiguous");
        let beta = self.beta.as_slice().expect("contiguous");
        let relu = self.relu;
        // Per channel, in a fixed order: Σ dy and Σ dy·x̂, dy through the absorbed ReLU (the
        // terms, so the sums, are those of a ReLU's masked gradient). The gate recomputes the
        // forward pass's `x̂·γ + β` with the same γ and β (the update comes after the backward
        // pass) and the same subnormal mode (training sets it on every thread, `subnormal`).
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (gm, bt) = (gamma[ch], beta[ch]);
                let gate = move |g: f32, xh: f32| if xh * gm + bt > 0.0 { g } else { 0.0 };
                (0..b)
                    .map(|bi| (bi * c + ch) * hw..(bi * c + ch + 1) * hw)
                    .map(|r| {
                        let (g, xh) = (&g_read[r.clone()], &xhat[r]);
                        if relu {
                            (
                                lane_fold(g, xh, gate),
                                lane_fold(g, xh, |g, xh| gate(g, xh) * xh),
                            )
                        } else {
                            (lane_sum(g), lane_dot(g, xh))
                        }
                    })
                    .fold((0.0, 0.0), |(s, sx), (a, ax)| (s + a, sx + ax))
            })
            .collect();
        {
            let gg = self.ggamma.as_slice_mut().expect("contiguous");
            let gb = self.gbeta.as_slice_mut().expect("contiguous");
            for (ch, &(sum_g, sum_gx)) in sums.iter().enumerate() {
                gg[ch] = sum_gx;
                gb[ch] = sum_g;
            }
        }
        let inv_std = &self.inv_std;
        // dx = γ·inv_std/n · (n·dy − Σdy − x̂·Σ(dy·x̂)).
        g.par_chunks_mut(c * hw)
            .zip(xhat.par_chunks(c * hw))
            .for_each(|(image, image_xhat)| {
                for (ch, (plane, plane_xhat)) in image
                    .chunks_exact_mut(hw)
                    .zip(image_xhat.chunks_exact(hw))
                    .enumerate()
                {
                    let k = gamma[ch] * inv_std[ch] / n;
                    let (sum_g, sum_gx) = sums[ch];
                    let (gm, bt) = (gamma[ch], beta[ch]);
                    let pairs = plane.iter_mut().zip(plane_xhat);
                    if relu {
                        pairs.for_each(|(gv, &xh)| {
                            let dy = if xh * gm + bt > 0.0 { *gv } else { 0.0 };
                            *gv = k * (n * dy - sum_g - xh * sum_gx);
                        });
                    } else {
                        pairs.for_each(|(gv, xh)| *gv = k * (n * *gv - sum_g - xh * sum_gx));
                    }
                }
            });
        grad
    }
    fn params(&mut self) -> Vec<ParamRef<'_>> {
        vec![
            ParamRef {
                value: &mut self.gamma,
                grad: &mut self.ggamma,
                decay: false,
            },
            ParamRef {
                value: &mut self.beta,
                grad: &mut self.gbeta,
                decay: false,
            },
        ]
    }
    fn state(&self) -> Vec<(String, &ArrayD<f32>)> {
        vec![
            ("weight".into(), &self.gamma),
            ("bias".into(), &self.beta),
            ("running_mean".into(), &self.running_mean),
            ("running_var".into(), &self.running_var),
        ]
    }
    fn state_mut(&mut self) -> Vec<(String, &mut ArrayD<f32>)> {
        vec![
            ("weight".into(), &mut self.gamma),
            ("bias".into(), &mut self.beta),
            ("running_mean".into(), &mut self.running_mean),
            ("running_var".into(), &mut self.running_var),
        ]
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        let names: Vec<String> = [
            ("weight", &self.gamma),
            ("bias", &self.beta),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ]
        .iter()
        .map(|(n, t)| graph.initializer(&format!("{prefix}.{n}"), t))
        .collect();
        let refs: Vec<&str> = std::iter::once(input)
            .chain(names.iter().map(String::as_str))
            .collect();
        graph.node(
            "BatchNormalization",
            &refs,
            prefix,
            &[("epsilon", Attr::Float(EPS))],
        )
    }
}
