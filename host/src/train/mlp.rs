//! A multi-layer perceptron: dense layers with ReLU between them, forward and backward.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array1, Array2, ArrayView2, Axis, Zip};
use rand::Rng;

use super::loss::kd_loss_and_grad;
use super::Kd;

/// One dense layer `y = x W + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// `[in, out]`.
    pub w: Array2<f32>,
    /// `[out]`.
    pub b: Array1<f32>,
}

/// Dense layers with ReLU after every layer but the last (which gives logits).
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    pub layers: Vec<Dense>,
}

/// Buffers reused across steps, sized for the largest batch.
pub struct Workspace {
    /// `acts[l]`: `[B, out_l]`, the output of layer `l` (after ReLU for hidden layers).
    acts: Vec<Array2<f32>>,
    /// `deltas[l]`: `[B, out_l]`, the loss gradient with respect to layer `l`'s pre-activation.
    deltas: Vec<Array2<f32>>,
}

impl Workspace {
    pub fn new(model: &Mlp, batch: usize) -> Self {
        let acts = model
            .layers
            .iter()
            .map(|l| Array2::zeros((batch, l.b.len())))
            .collect::<Vec<_>>();
        Self {
            deltas: acts.clone(),
            acts,
        }
    }
}

impl Mlp {
    /// Layer sizes `[D, h1, ..., C]`; weights He-uniform (`U(±sqrt(6 / fan_in))`), biases 0.
    pub fn new(sizes: &[usize], rng: &mut impl Rng) -> Self {
        let layers = sizes
            .windows(2)
            .map(|w| {
                let bound = (6.0 / w[0] as f32).sqrt();
                Dense {
                    w: Array2::from_shape_simple_fn((w[0], w[1]), || rng.gen_range(-bound..bound)),
                    b: Array1::zeros(w[1]),
                }
            })
            .collect();
        Self { layers }
    }

    /// A model of the same shape, all zeros (used for gradients and optimiser state).
    pub fn zeros_like(&self) -> Mlp {
        Mlp {
            layers: self
                .layers
                .iter()
                .map(|l| Dense {
                    w: Array2::zeros(l.w.raw_dim()),
                    b: Array1::zeros(l.b.raw_dim()),
                })
                .collect(),
        }
    }

    /// Number of parameters.
    pub fn num_parameters(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    pub fn input_dim(&self) -> usize {
        self.layers[0].w.nrows()
    }

    /// Logits `[B, C]` for `x` `[B, D]`.
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        assert_eq!(
            x.ncols(),
            self.input_dim(),
            "input width must match the model"
        );
        let mut a = x.to_owned();
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let mut z = a.dot(&layer.w);
            z += &layer.b;
            if l < last {
                z.mapv_inplace(|v| v.max(0.0));
            }
            a = z;
        }
        a
    }

    /// Forward and backward on a batch: returns the batch-mean loss and writes its gradient
    /// into `grads` (same shapes as the model).
    ///
    /// `x`: `[B, D]`; `y`: `[B]`; `teacher_probs`: `[B, C]` soft labels at τ (when α > 0).
    pub fn loss_and_grad(
        &self,
        x: ArrayView2<'_, f32>,
        y: &[u32],
        teacher_probs: Option<ArrayView2<'_, f32>>,
        kd: Kd,
        ws: &mut Workspace,
        grads: &mut Mlp,
    ) -> f32 {
        let b = x.nrows();
        assert_eq!(
            x.ncols(),
            self.input_dim(),
            "input width must match the model"
        );
        assert_eq!(y.len(), b, "one label per row");
        let last = self.layers.len() - 1;
        for l in 0..=last {
            let (before, rest) = ws.acts.split_at_mut(l);
            let out = &mut rest[0];
            let mut z = out.slice_mut(s![..b, ..]);
            let layer = &self.layers[l];
            if l == 0 {
                general_mat_mul(1.0, &x, &layer.w, 0.0, &mut z);
            } else {
                let input = before[l - 1].slice(s![..b, ..]);
                general_mat_mul(1.0, &input, &layer.w, 0.0, &mut z);
            }
            let relu = l < last;
            Zip::from(z.rows_mut()).for_each(|mut row| {
                Zip::from(&mut row).and(&layer.b).for_each(|v, &bias| {
                    let t = *v + bias;
                    *v = if relu { t.max(0.0) } else { t };
                });
            });
        }
        let loss = {
            let logits = ws.acts[last].slice(s![..b, ..]);
            let grad = ws.deltas[last].slice_mut(s![..b, ..]);
            kd_loss_and_grad(logits, y, teacher_probs, kd, grad)
        };
        for l in (0..=last).rev() {
            let delta = ws.deltas[l].slice(s![..b, ..]);
            let g = &mut grads.layers[l];
            if l == 0 {
                general_mat_mul(1.0, &x.t(), &delta, 0.0, &mut g.w);
            } else {
                let input = ws.acts[l - 1].slice(s![..b, ..]);
                general_mat_mul(1.0, &input.t(), &delta, 0.0, &mut g.w);
            }
            g.b.assign(&delta.sum_axis(Axis(0)));
            if l > 0 {
                let (lower, upper) = ws.deltas.split_at_mut(l);
                let delta = upper[0].slice(s![..b, ..]);
                let mut prev = lower[l - 1].slice_mut(s![..b, ..]);
                general_mat_mul(1.0, &delta, &self.layers[l].w.t(), 0.0, &mut prev);
                // ReLU's derivative: zero where the activation was clipped.
                Zip::from(&mut prev)
                    .and(ws.acts[l - 1].slice(s![..b, ..]))
                    .for_each(|d, &a| {
                        if a <= 0.0 {
                            *d = 0.0;
                        }
                    });
            }
        }
        loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Alpha, Temperature};
    use rand::SeedableRng;

    /// Central finite differences of the loss against the analytic gradient, for every
    /// parameter of a small MLP, with and without the distillation term.
    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let model = Mlp::new(&[5, 7, 6, 3], &mut rng);
        let x = Array2::from_shape_simple_fn((4, 5), || rng.gen_range(-1.0f32..1.0));
        let y = [0u32, 2, 1, 2];
        let t = crate::teacher::softmax_rows(
            Array2::from_shape_simple_fn((4, 3), || rng.gen_range(-2.0f32..2.0)).view(),
            2.0,
        );
        for alpha in [0.0, 0.5, 1.0] {
            let kd = Kd {
                alpha: Alpha::new(alpha).unwrap(),
                temperature: Temperature::new(2.0).unwrap(),
            };
            let mut ws = Workspace::new(&model, 4);
            let mut grads = model.zeros_like();
            model.loss_and_grad(x.view(), &y, Some(t.view()), kd, &mut ws, &mut grads);
            let loss_at = |m: &Mlp| {
                let mut ws = Workspace::new(m, 4);
                let mut g = m.zeros_like();
                m.loss_and_grad(x.view(), &y, Some(t.view()), kd, &mut ws, &mut g) as f64
            };
            // Small enough that no ReLU input crosses zero (1e-2 did, for two weights).
            let eps = 1e-3f32;
            let mut worst = 0.0f64;
            for l in 0..model.layers.len() {
                for idx in 0..model.layers[l].w.len() + model.layers[l].b.len() {
                    let mut plus = model.clone();
                    let mut minus = model.clone();
                    let nw = model.layers[l].w.len();
                    let analytic = if idx < nw {
                        let (r, c) = (
                            idx / model.layers[l].w.ncols(),
                            idx % model.layers[l].w.ncols(),
                        );
                        plus.layers[l].w[[r, c]] += eps;
                        minus.layers[l].w[[r, c]] -= eps;
                        grads.layers[l].w[[r, c]]
                    } else {
                        plus.layers[l].b[idx - nw] += eps;
                        minus.layers[l].b[idx - nw] -= eps;
                        grads.layers[l].b[idx - nw]
                    };
                    let numeric = (loss_at(&plus) - loss_at(&minus)) / (2.0 * eps as f64);
                    let err = (numeric - analytic as f64).abs() / (1e-2 + numeric.abs());
                    worst = worst.max(err);
                }
            }
            assert!(worst < 1e-2, "alpha {alpha}: worst relative error {worst}");
        }
    }

    #[test]
    fn forward_matches_training_forward() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let model = Mlp::new(&[4, 8, 3], &mut rng);
        let x = Array2::from_shape_simple_fn((2, 4), || rng.gen_range(-1.0f32..1.0));
        let logits = model.forward(x.view());
        let mut ws = Workspace::new(&model, 2);
        let mut g = model.zeros_like();
        let kd = Kd {
            alpha: Alpha::new(0.0).unwrap(),
            temperature: Temperature::new(1.0).unwrap(),
        };
        model.loss_and_grad(x.view(), &[0, 1], None, kd, &mut ws, &mut g);
        for (a, b) in logits.iter().zip(ws.acts[1].iter()) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
