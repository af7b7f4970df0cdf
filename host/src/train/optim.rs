//! Optimisers (SGD with momentum or Nesterov, AdamW), gradient clipping, and the
//! learning-rate schedule (constant, cosine, step; optional linear warm-up), per step.
//!
//! SGD follows PyTorch's `SGD`: `g += wd·w` (weights only); `v = μv + g`; Nesterov:
//! `w -= lr·(g + μv)`, else `w -= lr·v`. AdamW follows Loshchilov & Hutter: decoupled decay
//! `w -= lr·wd·w`, then Adam with bias correction.

use ndarray::ArrayD;
use serde::Serialize;

use super::kernels::elementwise::{self, Operand};
pub use super::kernels::weight_grad::SgdStep;
use super::kernels::weight_grad::{self, Factors, Sink};
use super::layers::layer::ParamRef;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerSpec {
    Sgd { momentum: f32, nesterov: bool },
    AdamW { beta1: f32, beta2: f32, eps: f32 },
}

pub struct Optimizer {
    spec: OptimizerSpec,
    weight_decay: f32,
    /// Per parameter: momentum (SGD) or first moment (AdamW), and second moment (AdamW).
    state: Vec<(ArrayD<f32>, ArrayD<f32>)>,
    steps: i32,
}

impl Optimizer {
    /// Whether an update with factored gradients ([`Gradient::Factors`]) writes their
    /// layers' packed weights (SGD, whose update is fused with the sum).
    pub fn writes_packed_weights(&self) -> bool {
        matches!(self.spec, OptimizerSpec::Sgd { .. })
    }

    pub fn new(spec: OptimizerSpec, weight_decay: f32) -> Self {
        Self {
            spec,
            weight_decay,
            state: Vec::new(),
            steps: 0,
        }
    }

    /// One update of every parameter with its gradient, at learning rate `lr`.
    pub fn step(&mut self, params: Vec<ParamRef<'_>>, lr: f32) {
        let updates = params
            .into_iter()
            .map(|p| Update {
                value: p.value,
                decay: p.decay,
                gradient: Gradient::Parts(vec![&*p.grad]),
            })
            .collect();
        self.step_summing(updates, lr);
    }

    /// One update of every parameter, its gradient the sum of its `parts` (added in order,
    /// element by element, as the update reads them: the shards' gradients are never written
    /// out summed), at learning rate `lr`.
    pub fn step_summing(&mut self, params: Vec<Update<'_>>, lr: f32) {
        if self.state.is_empty() {
            self.state = params.iter().map(|p| self.fresh_state(p.value)).collect();
        }
        self.steps += 1;
        let (spec, weight_decay, steps) = (self.spec, self.weight_decay, self.steps);
        let mut pending = settle_factors(spec, weight_decay, params, &mut self.state, lr);
        let adam = matches!(spec, OptimizerSpec::AdamW { .. });
        let tensors = pending.iter_mut().map(|p| p.operands(adam)).collect();
        match spec {
            OptimizerSpec::Sgd { momentum, nesterov } => {
                sgd_pass(tensors, lr, momentum, nesterov);
            }
            OptimizerSpec::AdamW { beta1, beta2, eps } => {
                adamw_pass(tensors, lr, (beta1, beta2, eps), steps);
            }
        }
    }

    /// Zeroed state for a parameter of `value`'s shape: the momentum (or first moment), and
    /// AdamW's second moment (empty for SGD).
    fn fresh_state(&self, value: &ArrayD<f32>) -> (ArrayD<f32>, ArrayD<f32>) {
        let second = match self.spec {
            OptimizerSpec::AdamW { .. } => ArrayD::zeros(value.raw_dim()),
            OptimizerSpec::Sgd { .. } => ArrayD::zeros(ndarray::IxDyn(&[0])),
        };
        (ArrayD::zeros(value.raw_dim()), second)
    }
}

/// A parameter for the elementwise pass, with its optimiser state and its gradient: parts to
/// add, or the sum of its factors (AdamW).
struct Pending<'v, 's> {
    decay: f32,
    value: &'v mut ArrayD<f32>,
    state: &'s mut (ArrayD<f32>, ArrayD<f32>),
    parts: Vec<&'v ArrayD<f32>>,
    summed: Option<ArrayD<f32>>,
}

impl Pending<'_, '_> {
    /// Operands of the elementwise pass: value, first state, (second state), then the
    /// gradient's parts; tagged with the parameter's weight decay.
    fn operands(&mut self, adam: bool) -> (f32, Vec<Operand<'_>>) {
        let (m, v) = &mut *self.state;
        let mut operands = vec![Operand::write(self.value), Operand::write(m)];
        if adam {
            operands.push(Operand::write(v));
        }
        operands.extend(self.parts.iter().map(|g| Operand::read(g)));
        operands.extend(self.summed.iter().map(Operand::read));
        (self.decay, operands)
    }
}

/// Gradients left as factors: SGD sums and applies them block by block here
/// ([`weight_grad::sum`] with the step fused); AdamW reads them summed. Returns the
/// parameters the elementwise pass updates.
fn settle_factors<'v, 's>(
    spec: OptimizerSpec,
    weight_decay: f32,
    params: Vec<Update<'v>>,
    state: &'s mut [(ArrayD<f32>, ArrayD<f32>)],
    lr: f32,
) -> Vec<Pending<'v, 's>> {
    let mut pending = Vec::new();
    for (p, state) in params.into_iter().zip(state) {
        let decay = if p.decay { weight_decay } else { 0.0 };
        match (p.gradient, spec) {
            (Gradient::Parts(parts), _) => pending.push(Pending {
                decay,
                value: p.value,
                state,
                parts,
                summed: None,
            }),
            (Gradient::Factors { parts, packed }, OptimizerSpec::Sgd { momentum, nesterov }) => {
                weight_grad::sum(
                    &parts,
                    Sink::Step {
                        weights: p.value.as_slice_mut().expect("standard layout"),
                        momenta: state.0.as_slice_mut().expect("standard layout"),
                        step: SgdStep {
                            lr,
                            momentum,
                            nesterov,
                            decay,
                        },
                        packed,
                    },
                );
            }
            (Gradient::Factors { parts, .. }, OptimizerSpec::AdamW { .. }) => {
                let mut g = ArrayD::zeros(p.value.raw_dim());
                weight_grad::sum(
                    &parts,
                    Sink::Store(g.as_slice_mut().expect("standard layout")),
                );
                pending.push(Pending {
                    decay,
                    value: p.value,
                    state,
                    parts: Vec::new(),
                    summed: Some(g),
                });
            }
        }
    }
    pending
}

/// SGD over every parameter's operands (value, momentum, gradient parts), in fixed chunks.
fn sgd_pass(tensors: Vec<(f32, Vec<Operand<'_>>)>, lr: f32, momentum: f32, nesterov: bool) {
    elementwise::for_each_chunk(tensors, |&decay, operands| {
        let (state, parts) = operands.split_at_mut(2);
        let [Operand::Write(w), Operand::Write(buf)] = state else {
            unreachable!("SGD operands: value, momentum, gradient parts")
        };
        for_gradient_blocks(parts, |at, g| {
            let range = at..at + g.len();
            let step = SgdStep {
                lr,
                momentum,
                nesterov,
                decay,
            };
            for ((w, &g), buf) in w[range.clone()]
                .iter_mut()
                .zip(g)
                .zip(buf[range].iter_mut())
            {
                step.apply(w, buf, g);
            }
        });
    });
}

/// AdamW (decoupled decay) at step `steps` over every parameter's operands (value, two
/// moments, gradient parts), in fixed chunks.
fn adamw_pass(
    tensors: Vec<(f32, Vec<Operand<'_>>)>,
    lr: f32,
    (beta1, beta2, eps): (f32, f32, f32),
    steps: i32,
) {
    let c1 = 1.0 - beta1.powi(steps);
    let c2 = 1.0 - beta2.powi(steps);
    elementwise::for_each_chunk(tensors, |&decay, operands| {
        let (state, parts) = operands.split_at_mut(3);
        let [Operand::Write(w), Operand::Write(m1), Operand::Write(m2)] = state else {
            unreachable!("AdamW operands: value, two moments, gradient parts")
        };
        for_gradient_blocks(parts, |at, g| {
            let range = at..at + g.len();
            for (((w, &g), m1), m2) in w[range.clone()]
                .iter_mut()
                .zip(g)
                .zip(m1[range.clone()].iter_mut())
                .zip(m2[range].iter_mut())
            {
                *w -= lr * decay * *w;
                *m1 = beta1 * *m1 + (1.0 - beta1) * g;
                *m2 = beta2 * *m2 + (1.0 - beta2) * g * g;
                *w -= lr * (*m1 / c1) / ((*m2 / c2).sqrt() + eps);
            }
        });
    });
}

/// A parameter to update: its value, whether weight decay applies, and its gradient.
pub struct Update<'a> {
    pub value: &'a mut ArrayD<f32>,
    pub decay: bool,
    pub gradient: Gradient<'a>,
}

/// A parameter's gradient as a training step left it.
pub enum Gradient<'a> {
    /// Parts to add in order (one part: the gradient itself; several: the shards' of a
    /// batch, in shard order).
    Parts(Vec<&'a ArrayD<f32>>),
    /// The shards' factors of a dense layer's weight gradient, summed as the update reads
    /// them ([`super::kernels::weight_grad`]); with SGD the new weights are also written to `packed`
    /// when given (the layer's panels for its forward products).
    Factors {
        parts: Vec<Factors<'a>>,
        packed: Option<&'a mut [f32]>,
    },
}

/// Values per block of [`for_gradient_blocks`]: a block of the gradient stays in L1.
const GRADIENT_BLOCK: usize = 512;

/// Calls `work(offset, gradient)` for consecutive blocks of a chunk, the gradient of each
/// the sum of the blocks of `parts` (all `Operand::Read`), added in order.
fn for_gradient_blocks(parts: &[Operand<'_>], mut work: impl FnMut(usize, &[f32])) {
    fn read<'p>(o: &'p Operand<'_>) -> &'p [f32] {
        match o {
            Operand::Read(part) => part,
            Operand::Write(_) => unreachable!("gradient parts are read"),
        }
    }
    let first = read(&parts[0]);
    if parts.len() == 1 {
        work(0, first);
        return;
    }
    let mut sum = [0f32; GRADIENT_BLOCK];
    for at in (0..first.len()).step_by(GRADIENT_BLOCK) {
        let end = (at + GRADIENT_BLOCK).min(first.len());
        let block = &mut sum[..end - at];
        for ((s, a), b) in block
            .iter_mut()
            .zip(&first[at..end])
            .zip(&read(&parts[1])[at..end])
        {
            *s = a + b;
        }
        for part in &parts[2..] {
            for (s, g) in block.iter_mut().zip(&read(part)[at..end]) {
                *s += g;
            }
        }
        work(at, block);
    }
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`; returns the norm
/// before clipping. Both passes run over chunks of all gradients in one parallel region
/// ([`elementwise`]); the chunks' sums of squares are added in order, so the norm does not
/// depend on the thread count.
pub fn clip_grad_norm(params: &mut [ParamRef<'_>], max_norm: f32) -> f32 {
    let grads = params
        .iter()
        .map(|p| ((), vec![Operand::read(p.grad)]))
        .collect();
    let squares = elementwise::map_chunks(grads, |_, operands| {
        let [Operand::Read(g)] = operands else {
            unreachable!("the gradient is read")
        };
        g.iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>()
    });
    let norm = squares.iter().sum::<f64>().sqrt() as f32;
    if norm > max_norm && norm > 0.0 {
        let scale = max_norm / norm;
        let grads = params
            .iter_mut()
            .map(|p| ((), vec![Operand::write(p.grad)]))
            .collect();
        elementwise::for_each_chunk(grads, |_, operands| {
            let [Operand::Write(g)] = operands else {
                unreachable!("the gradient is written")
            };
            g.iter_mut().for_each(|g| *g *= scale);
        });
    }
    norm
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ScheduleSpec {
    Constant,
    /// From the base rate down to 0 over the steps after warm-up.
    Cosine,
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        every_epochs: usize,
        gamma: f32,
    },
}

/// Learning rate as a function of the step.
pub struct LrSchedule {
    spec: ScheduleSpec,
    base: f32,
    total_steps: usize,
    warmup_steps: usize,
    steps_per_epoch: usize,
}

impl LrSchedule {
    pub fn new(
        spec: ScheduleSpec,
        base: f32,
        epochs: usize,
        steps_per_epoch: usize,
        warmup_epochs: usize,
    ) -> Self {
        Self {
            spec,
            base,
            total_steps: (epochs * steps_per_epoch).max(1),
            warmup_steps: warmup_epochs * steps_per_epoch,
            steps_per_epoch: steps_per_epoch.max(1),
        }
    }

    pub fn at(&self, step: usize) -> f32 {
        if step < self.warmup_steps {
            return self.base * (step + 1) as f32 / self.warmup_steps as f32;
        }
        match self.spec {
            ScheduleSpec::Constant => self.base,
            ScheduleSpec::Cosine => {
                let span = (self.total_steps - self.warmup_steps.min(self.total_steps)).max(1);
                let progress = (step - self.warmup_steps).min(span) as f32 / span as f32;
                self.base * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos())
            }
            ScheduleSpec::Step {
                every_epochs,
                gamma,
            } => {
                let epoch = step / self.steps_per_epoch;
                self.base * gamma.powi((epoch / every_epochs.max(1)) as i32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn schedules() {
        let s = LrSchedule::new(ScheduleSpec::Cosine, 0.1, 10, 10, 0);
        assert!((s.at(0) - 0.1).abs() < 1e-7);
        assert!((s.at(50) - 0.05).abs() < 1e-6);
        assert!(s.at(100).abs() < 1e-7);
        let w = LrSchedule::new(ScheduleSpec::Cosine, 0.1, 10, 10, 2);
        assert!((w.at(0) - 0.005).abs() < 1e-7);
        assert!((w.at(19) - 0.1).abs() < 1e-7);
        assert!((w.at(20) - 0.1).abs() < 1e-7);
        let st = LrSchedule::new(
            ScheduleSpec::Step {
                every_epochs: 3,
                gamma: 0.1,
            },
            1.0,
            10,
            5,
            0,
        );
        assert!((st.at(14) - 1.0).abs() < 1e-7);
        assert!((st.at(15) - 0.1).abs() < 1e-7);
    }

    fn one_param_step(
        spec: OptimizerSpec,
        decay: bool,
        w0: f32,
        g0: f32,
        steps: usize,
        lr: f32,
        wd: f32,
    ) -> f32 {
        let mut w = ArrayD::from_elem(IxDyn(&[1]), w0);
        let mut g = ArrayD::from_elem(IxDyn(&[1]), g0);
        let mut opt = Optimizer::new(spec, wd);
        for _ in 0..steps {
            opt.step(
                vec![ParamRef {
                    value: &mut w,
                    grad: &mut g,
                    decay,
                }],
                lr,
            );
        }
        w[[0]]
    }

    #[test]
    fn factored_gradients_update_as_their_summed_products_do() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut random = |shape: (usize, usize)| {
            ndarray::Array2::from_shape_simple_fn(shape, || rng.gen_range(-1.0f32..1.0))
        };
        let (inputs, outputs) = (19, 13);
        let xs = [random((6, inputs)), random((5, inputs))];
        let gs = [random((6, outputs)), random((5, outputs))];
        // The shards' gradients as parts: xᵀ g per shard.
        let parts: Vec<ArrayD<f32>> = xs
            .iter()
            .zip(&gs)
            .map(|(x, g)| x.t().dot(g).into_dyn())
            .collect();
        let start = random((inputs, outputs)).into_dyn();
        for spec in [
            OptimizerSpec::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
            OptimizerSpec::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        ] {
            let (mut by_parts, mut by_factors) = (start.clone(), start.clone());
            let (mut o1, mut o2) = (Optimizer::new(spec, 5e-4), Optimizer::new(spec, 5e-4));
            // Two steps, so that the optimiser's state carries from one to the next.
            for _ in 0..2 {
                o1.step_summing(
                    vec![Update {
                        value: &mut by_parts,
                        decay: true,
                        gradient: Gradient::Parts(parts.iter().collect()),
                    }],
                    0.05,
                );
                let factors = xs
                    .iter()
                    .zip(&gs)
                    .map(|(x, g)| Factors {
                        x: x.view(),
                        g: g.view(),
                    })
                    .collect();
                o2.step_summing(
                    vec![Update {
                        value: &mut by_factors,
                        decay: true,
                        gradient: Gradient::Factors {
                            parts: factors,
                            packed: None,
                        },
                    }],
                    0.05,
                );
            }
            assert_ne!(by_parts, start, "{spec:?}: the steps moved the weights");
            for (a, b) in by_parts.iter().zip(&by_factors) {
                assert!((a - b).abs() <= 1e-5, "{spec:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn sgd_nesterov_and_adamw_match_hand_computation() {
        // Momentum 0.9, g = 1, lr 0.1: v1 = 1, v2 = 1.9 → w = 1 - 0.1 - 0.19.
        let w = one_param_step(
            OptimizerSpec::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            false,
            1.0,
            1.0,
            2,
            0.1,
            0.0,
        );
        assert!((w - 0.71).abs() < 1e-6, "{w}");
        // Nesterov: update1 = 1 + 0.9·1 = 1.9; update2 = 1 + 0.9·1.9 = 2.71.
        let w = one_param_step(
            OptimizerSpec::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
            false,
            1.0,
            1.0,
            2,
            0.1,
            0.0,
        );
        assert!((w - (1.0 - 0.19 - 0.271)).abs() < 1e-6, "{w}");
        // AdamW, one step: bias-corrected m/sqrt(v) = 1, decay 0.1·0.5·1 first.
        let w = one_param_step(
            OptimizerSpec::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 0.0,
            },
            true,
            1.0,
            3.0,
            1,
            0.1,
            0.5,
        );
        assert!((w - (1.0 - 0.05 - 0.1)).abs() < 1e-6, "{w}");
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let mut w1 = ArrayD::zeros(IxDyn(&[1]));
        let mut w2 = ArrayD::zeros(IxDyn(&[1]));
        let mut g1 = ArrayD::from_elem(IxDyn(&[1]), 3.0f32);
        let mut g2 = ArrayD::from_elem(IxDyn(&[1]), 4.0f32);
        let mut params = vec![
            ParamRef {
                value: &mut w1,
                grad: &mut g1,
                decay: true,
            },
            ParamRef {
                value: &mut w2,
                grad: &mut g2,
                decay: true,
            },
        ];
        assert_eq!(clip_grad_norm(&mut params, 1.0), 5.0);
        assert!((params[0].grad[[0]] - 0.6).abs() < 1e-6);
        assert!((params[1].grad[[0]] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn clipping_many_chunks_gives_the_same_bits_on_any_thread_count() {
        // Two tensors of several chunks each, with values that make the order of a sum matter.
        let clipped = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut values = [ArrayD::zeros(IxDyn(&[1])), ArrayD::zeros(IxDyn(&[1]))];
            let mut grads = [
                ArrayD::from_shape_fn(IxDyn(&[3 * elementwise::CHUNK + 5]), |i| {
                    ((i[0] * 7919) % 1000) as f32 * 1e-3 + 1e-7 * i[0] as f32
                }),
                ArrayD::from_shape_fn(IxDyn(&[40, elementwise::CHUNK / 8]), |i| {
                    ((i[0] + 3 * i[1]) % 17) as f32 - 8.0
                }),
            ];
            let expected = grads
                .iter()
                .flat_map(|g| g.iter())
                .map(|&g| f64::from(g) * f64::from(g))
                .sum::<f64>()
                .sqrt();
            let [v1, v2] = &mut values;
            let [g1, g2] = &mut grads;
            let mut params = vec![
                ParamRef {
                    value: v1,
                    grad: g1,
                    decay: true,
                },
                ParamRef {
                    value: v2,
                    grad: g2,
                    decay: true,
                },
            ];
            let norm = pool.install(|| clip_grad_norm(&mut params, 1.0));
            assert!(
                (f64::from(norm) - expected).abs() < 1e-6 * expected,
                "{norm} {expected}"
            );
            let scaled = params
                .iter()
                .flat_map(|p| p.grad.iter())
                .map(|&g| f64::from(g) * f64::from(g))
                .sum::<f64>()
                .sqrt();
            assert!((scaled - 1.0).abs() < 1e-5, "norm after clipping {scaled}");
            (
                norm.to_bits(),
                params[1]
                    .grad
                    .iter()
                    .map(|g| g.to_bits())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(clipped(1), clipped(3));
    }
}
