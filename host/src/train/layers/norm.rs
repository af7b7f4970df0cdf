//! Batch normalisation over the channel axis: `[B, C]` or `[B, C, H, W]`.
//!
//! Training: batch mean and biased variance per channel; running statistics updated with
//! momentum 0.1 (running variance unbiased, as PyTorch). Evaluation: running statistics.

use ndarray::{ArrayD, IxDyn};

use super::{Layer, Mode, ParamRef};
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
    /// Normalised input and per-channel `1 / sqrt(var + eps)` of the last training pass.
    cache: Option<(Vec<f32>, Vec<f32>)>,
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
            cache: None,
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
        let mut x = x.as_standard_layout().into_owned();
        let data = x.as_slice_mut().expect("standard layout");
        let gamma = self.gamma.as_slice().expect("contiguous").to_vec();
        let beta = self.beta.as_slice().expect("contiguous").to_vec();
        match mode {
            Mode::Eval => {
                let rm = self.running_mean.as_slice().expect("contiguous");
                let rv = self.running_var.as_slice().expect("contiguous");
                for bi in 0..b {
                    for ch in 0..c {
                        let inv = 1.0 / (rv[ch] + EPS).sqrt();
                        let plane = &mut data[(bi * c + ch) * hw..(bi * c + ch + 1) * hw];
                        for v in plane {
                            *v = (*v - rm[ch]) * inv * gamma[ch] + beta[ch];
                        }
                    }
                }
            }
            Mode::Train => {
                let n = (b * hw) as f32;
                let mut mean = vec![0f32; c];
                let mut var = vec![0f32; c];
                for bi in 0..b {
                    for ch in 0..c {
                        let plane = &data[(bi * c + ch) * hw..(bi * c + ch + 1) * hw];
                        mean[ch] += plane.iter().sum::<f32>();
                    }
                }
                mean.iter_mut().for_each(|m| *m /= n);
                for bi in 0..b {
                    for ch in 0..c {
                        let plane = &data[(bi * c + ch) * hw..(bi * c + ch + 1) * hw];
                        var[ch] += plane
                            .iter()
                            .map(|v| (v - mean[ch]) * (v - mean[ch]))
                            .sum::<f32>();
                    }
                }
                var.iter_mut().for_each(|v| *v /= n);
                let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + EPS).sqrt()).collect();
                let mut xhat = vec![0f32; data.len()];
                for bi in 0..b {
                    for ch in 0..c {
                        let range = (bi * c + ch) * hw..(bi * c + ch + 1) * hw;
                        for (v, xh) in data[range.clone()].iter_mut().zip(&mut xhat[range]) {
                            *xh = (*v - mean[ch]) * inv_std[ch];
                            *v = *xh * gamma[ch] + beta[ch];
                        }
                    }
                }
                let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
                let rm = self.running_mean.as_slice_mut().expect("contiguous");
                let rv = self.running_var.as_slice_mut().expect("contiguous");
                for ch in 0..c {
                    rm[ch] = (1.0 - MOMENTUM) * rm[ch] + MOMENTUM * mean[ch];
                    rv[ch] = (1.0 - MOMENTUM) * rv[ch] + MOMENTUM * var[ch] * unbias;
                }
                self.cache = Some((xhat, inv_std));
            }
        }
        x
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let (xhat, inv_std) = self
            .cache
            .take()
            .expect("backward after a training forward pass");
        let b = grad.shape()[0];
        let c = self.shape[0];
        let hw = self.spatial();
        let n = (b * hw) as f32;
        let mut grad = grad.as_standard_layout().into_owned();
        let g = grad.as_slice_mut().expect("standard layout");
        let mut sum_g = vec![0f32; c];
        let mut sum_gx = vec![0f32; c];
        for bi in 0..b {
            for ch in 0..c {
                let range = (bi * c + ch) * hw..(bi * c + ch + 1) * hw;
                for (gv, xh) in g[range.clone()].iter().zip(&xhat[range]) {
                    sum_g[ch] += gv;
                    sum_gx[ch] += gv * xh;
                }
            }
        }
        let gamma = self.gamma.as_slice().expect("contiguous").to_vec();
        {
            let gg = self.ggamma.as_slice_mut().expect("contiguous");
            let gb = self.gbeta.as_slice_mut().expect("contiguous");
            gg.copy_from_slice(&sum_gx);
            gb.copy_from_slice(&sum_g);
        }
        // dx = γ·inv_std/n · (n·dy − Σdy − x̂·Σ(dy·x̂)).
        for bi in 0..b {
            for ch in 0..c {
                let k = gamma[ch] * inv_std[ch] / n;
                let range = (bi * c + ch) * hw..(bi * c + ch + 1) * hw;
                for (gv, xh) in g[range.clone()].iter_mut().zip(&xhat[range]) {
                    *gv = k * (n * *gv - sum_g[ch] - xh * sum_gx[ch]);
                }
            }
        }
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
