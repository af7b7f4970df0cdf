//! A network: a sequence of layers built from specs, ending in `dense num_classes`, with
//! the training step (forward, KD loss, backward), evaluation, saving and loading weights
//! (safetensors) and export to ONNX.
//!
//! A training batch of more than [`SHARD_ROWS`] rows is cut into shards of at most that many
//! rows, run on the cores at once, each through its own replica of the layers (sharing the
//! network's parameters while the shard runs, own caches and gradients) with whole,
//! single-threaded products; the shards' gradients are then summed in shard order into the
//! network's, which the optimiser reads. This keeps both cores on whole steps instead of
//! meeting at every product, and the shards are fixed by the batch size alone, so results do
//! not depend on the number of threads. Networks whose layers couple the examples of a batch
//! (batch normalisation) run unsharded.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{s, Array2, ArrayD, ArrayView2, Ix2, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::kd::Kd;
use super::kernels::elementwise::{self, Operand};
use super::kernels::gemm;
use super::kernels::weight_grad::{self, Factors, Sink};
use super::layers::build;
use super::layers::layer::{backward_timed, forward_timed};
use super::layers::{Layer, Mode, ParamRef, SharedTensor, Site, WeightFactors};
use super::loss::{kd_loss_and_grad, PerExample, SoftLabels};
use super::optim::{Gradient, Optimizer, Update};
use super::spec::LayerSpec;

/// Most rows in one shard of a training batch. Fashion-MNIST's MLP at batch 128 on 2 cores,
/// the three settings interleaved in one session: 46–50k samples/s with shards of 64 rows,
/// 36–38k with 32 (the products get thin), 39–47k with 128 (no sharding, products split).
pub const SHARD_ROWS: usize = 64;

pub struct Network {
    layers: Vec<Box<dyn Layer>>,
    /// Replicas of `layers`, one per shard of a batch, made when first needed; each shares the
    /// parameters of `layers` (no copy) while its shard runs and holds empty stand-ins
    /// otherwise. `layers` owns the parameters the optimiser updates, and the sum of the
    /// shards' gradients.
    replicas: Vec<Vec<Box<dyn Layer>>>,
    /// Replicas whose gradients the last training step left in their own buffers, not yet
    /// summed into `layers` (0: the gradients of `layers` are whole). Summed when the
    /// gradients are asked for ([`Network::params`]), or read in the optimiser's own pass
    /// ([`Network::update`]) without being written: one pass over memory instead of two.
    pending_parts: usize,
    /// Shape of one input example, `[D]` or `[C, H, W]`.
    input_shape: Vec<usize>,
    num_classes: usize,
}

/// Logits `[B, C]` of `layers` for `x` `[B, D]` (rows of examples of `input_shape`).
fn forward_layers(
    layers: &mut [Box<dyn Layer>],
    input_shape: &[usize],
    x: ArrayView2<'_, f32>,
    mode: Mode,
) -> Array2<f32> {
    let d: usize = input_shape.iter().product();
    assert_eq!(x.ncols(), d, "input width must match the network");
    let mut shape = vec![x.nrows()];
    shape.extend(input_shape);
    let mut a = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&shape))
        .expect("standard layout");
    for layer in layers.iter_mut() {
        a = forward_timed(layer, a, mode);
    }
    a.into_dimensionality::<Ix2>()
        .expect("the last layer is dense")
}

/// Forward and backward pass of one shard through `layers`, whose gradients it sets;
/// returns the shard's mean loss and its logits `[b, C]`. `weight` (the shard's share of the batch's rows) scales the
/// gradients, so that the shards' gradients sum to those of the batch mean.
///
/// `x`: `[b, D]`; `y`: `[b]`; `teacher`: soft labels `[b, C]`.
#[allow(clippy::too_many_arguments)]
fn shard_step(
    layers: &mut [Box<dyn Layer>],
    input_shape: &[usize],
    x: ArrayView2<'_, f32>,
    y: &[u32],
    teacher: Option<SoftLabels<'_>>,
    kd: Kd,
    weight: f32,
    per_example: PerExample<'_>,
) -> (f32, Array2<f32>) {
    let logits = forward_layers(layers, input_shape, x, Mode::Train);
    let mut grad = Array2::<f32>::zeros(logits.raw_dim());
    let loss = kd_loss_and_grad(logits.view(), y, teacher, kd, grad.view_mut(), per_example);
    if weight != 1.0 {
        grad *= weight;
    }
    let mut g = grad.into_dyn();
    let first = layers.iter().position(|l| l.has_params()).unwrap_or(0);
    for layer in layers[first..].iter_mut().rev() {
        g = backward_timed(layer, g);
    }
    (loss, logits)
}

/// What a training step returns beyond the update ([`StepOptions`] says what is asked).
#[derive(Debug)]
pub struct StepOutput {
    /// The batch's mean (weighted) loss.
    pub loss: f32,
    /// `[B, C]`, when asked.
    pub logits: Option<Array2<f32>>,
    /// `[B]` unweighted per-example losses, when asked.
    pub losses: Option<Vec<f32>>,
}

/// What a training step is asked for beyond the update.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepOptions<'a> {
    /// Keep the logits `[B, C]` of the training-mode forward pass.
    pub keep_logits: bool,
    /// `[B]` weights of each example's loss; `None`: all 1.
    pub weights: Option<&'a [f32]>,
    /// Return each example's unweighted loss.
    pub per_example_losses: bool,
}

/// `all` `[b]` cut into the rows of each of `shards` shards (`b·i/shards..b·(i+1)/shards`).
fn split_rows(all: &mut [f32], b: usize, shards: usize) -> Vec<&mut [f32]> {
    let mut parts = Vec::with_capacity(shards);
    let mut rest = all;
    for i in 0..shards {
        let len = b * (i + 1) / shards - b * i / shards;
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(len);
        parts.push(part);
        rest = tail;
    }
    parts
}

/// Replaces a replica's parameters by empty stand-ins.
fn detach(replica: &mut [Box<dyn Layer>]) {
    let mut stand_ins = std::iter::repeat_with(SharedTensor::detached);
    for layer in replica.iter_mut() {
        layer.use_params(&mut stand_ins);
    }
}

/// Each replica's gradients, parameter by parameter in the order of `Network::params`.
fn replica_gradients(replicas: &mut [Vec<Box<dyn Layer>>]) -> Vec<Vec<&ArrayD<f32>>> {
    replicas
        .iter_mut()
        .map(|r| {
            r.iter_mut()
                .flat_map(|l| l.params())
                .map(|p| -> &ArrayD<f32> { p.grad })
                .collect()
        })
        .collect()
}

/// The factors of weight gradients the first `replicas` left deferred, per layer of the
/// network: `Some` (one pair per replica, in shard order) where the layer deferred its first
/// parameter's gradient ([`Layer::defer_weight_grad`]).
fn take_weight_factors(
    replicas: &mut [Vec<Box<dyn Layer>>],
    layers: usize,
) -> Vec<Option<Vec<WeightFactors>>> {
    (0..layers)
        .map(|l| {
            let parts: Vec<_> = replicas
                .iter_mut()
                .filter_map(|r| r[l].take_weight_factors())
                .collect();
            assert!(
                parts.is_empty() || parts.len() == replicas.len(),
                "every shard defers a layer's weight gradient, or none"
            );
            (!parts.is_empty()).then_some(parts)
        })
        .collect()
}

/// Views of [`take_weight_factors`]' pairs.
fn factor_views(factors: &[Option<Vec<WeightFactors>>]) -> Vec<Option<Vec<Factors<'_>>>> {
    factors
        .iter()
        .map(|f| {
            f.as_ref().map(|parts| {
                parts
                    .iter()
                    .map(|(x, g)| Factors {
                        x: x.view(),
                        g: g.view(),
                    })
                    .collect()
            })
        })
        .collect()
}

impl Network {
    /// [`Network::build`] with the parameters initialised as `init` says.
    pub fn build_with_init(
        specs: &[LayerSpec],
        input_shape: &[usize],
        num_classes: usize,
        seed: u64,
        init: super::spec::Init,
    ) -> Result<Self, String> {
        let mut net = Self::build(specs, input_shape, num_classes, seed)?;
        if init == super::spec::Init::Torch {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7041_7c4e);
            for layer in net.layers.iter_mut() {
                layer.init_like_torch(&mut rng);
            }
        }
        Ok(net)
    }

    /// Builds the layers of `specs` for examples of `input_shape`, then `dense num_classes`,
    /// He-uniform initialised (weights `U(±sqrt(6/fan_in))`, zero biases). Shapes are
    /// checked here, so a bad spec fails before training starts.
    pub fn build(
        specs: &[LayerSpec],
        input_shape: &[usize],
        num_classes: usize,
        seed: u64,
    ) -> Result<Self, String> {
        Self::build_layers(specs, input_shape, num_classes, seed, true)
    }

    /// [`Network::build`], with each ReLU its own pass unless `fuse_relus`
    /// ([`crate::train::layers::layer::fuse_relus`]; the same bits either way).
    fn build_layers(
        specs: &[LayerSpec],
        input_shape: &[usize],
        num_classes: usize,
        seed: u64,
        fuse_relus: bool,
    ) -> Result<Self, String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut shape = input_shape.to_vec();
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        let classifier = LayerSpec::Dense { units: num_classes };
        let all: Vec<&LayerSpec> = specs.iter().chain(std::iter::once(&classifier)).collect();
        for (index, spec) in execution_order(&all) {
            let mut site = Site {
                shape: &shape,
                index,
                spec,
                seed,
                rng: &mut rng,
                fuse_relus,
            };
            let built = build::build(&mut site)?;
            let out = built.last().expect("a spec builds a layer").output_shape();
            if out.contains(&0) {
                return Err(site.error(format!("leaves an empty output {out:?}")));
            }
            shape = out;
            layers.extend(built);
        }
        if fuse_relus {
            crate::train::layers::layer::fuse_relus(&mut layers);
        }
        // Layers before the first one with parameters do nothing to learn from: stop the
        // backward pass there.
        if let Some(first) = layers.iter().position(|l| l.has_params()) {
            layers[first].set_input_grad(false);
        }
        Ok(Self {
            layers,
            replicas: Vec::new(),
            pending_parts: 0,
            input_shape: input_shape.to_vec(),
            num_classes,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The layers as they run, one line each (for logs; see [`execution_order`]).
    pub fn describe(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.describe()).collect()
    }

    /// Forward FLOPs per example, in total and in convolutions alone. A training step costs
    /// about three times the forward pass (the backward pass computes two products per one).
    pub fn flops_per_example(&self) -> (u64, u64) {
        let total = self.layers.iter().map(|l| l.flops()).sum();
        let conv = self
            .layers
            .iter()
            .filter(|l| l.describe().starts_with("conv") || l.describe().starts_with("res"))
            .map(|l| l.flops())
            .sum();
        (total, conv)
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&mut self) -> usize {
        self.params().iter().map(|p| p.value.len()).sum()
    }

    /// Every parameter with its gradient, in a fixed order.
    /// The precision of the products of training steps (every layer, replicas included).
    pub fn set_precision(&mut self, precision: super::kernels::gemm::Precision) {
        for layer in self
            .layers
            .iter_mut()
            .chain(self.replicas.iter_mut().flatten())
        {
            layer.set_precision(precision);
        }
    }

    /// Every parameter with its gradient (the whole batch's: the shards' parts are summed
    /// first).
    pub fn params(&mut self) -> Vec<ParamRef<'_>> {
        if self.pending_parts > 0 {
            self.sum_replica_gradients(self.pending_parts);
            self.pending_parts = 0;
        }
        self.layers.iter_mut().flat_map(|l| l.params()).collect()
    }

    /// One optimiser step on the last training step's gradients. After a step cut into
    /// shards, the optimiser adds the shards' gradients itself (in shard order, the bits of
    /// [`Network::params`]' sum) and the summed gradients are not kept.
    pub fn update(&mut self, optimizer: &mut Optimizer, lr: f32) {
        let count = std::mem::take(&mut self.pending_parts);
        if count == 0 {
            let params = self.params();
            optimizer.step(params, lr);
            return;
        }
        let factors = take_weight_factors(&mut self.replicas[..count], self.layers.len());
        let views = factor_views(&factors);
        let mut replicas = replica_gradients(&mut self.replicas[..count]);
        let writes_packed = optimizer.writes_packed_weights();
        // Which layers' packed weights the update writes (`views` stays borrowed by it).
        let deferred_layers: Vec<bool> = views.iter().map(Option::is_some).collect();
        let updates = self
            .layers
            .iter_mut()
            .enumerate()
            .flat_map(|(l, layer)| {
                let deferred = views[l].as_ref();
                let (params, mut packed) = match deferred {
                    Some(_) if writes_packed => layer.params_and_packed(),
                    _ => (layer.params(), None),
                };
                params
                    .into_iter()
                    .enumerate()
                    .map(move |(k, p)| (p, deferred.filter(|_| k == 0), packed.take()))
            })
            .enumerate()
            .map(|(i, (p, deferred, packed))| Update {
                value: p.value,
                decay: p.decay,
                gradient: match deferred {
                    Some(factors) => Gradient::Factors {
                        parts: factors.clone(),
                        packed,
                    },
                    None => Gradient::Parts(replicas.iter_mut().map(|r| r[i]).collect()),
                },
            })
            .collect();
        optimizer.step_summing(updates, lr);
        if writes_packed {
            for (layer, &deferred) in self.layers.iter_mut().zip(&deferred_layers) {
                if deferred {
                    layer.set_packed_fresh(true);
                }
            }
        }
    }

    /// Logits `[B, C]` for `x` `[B, D]` (flat rows of examples of `input_shape`).
    pub fn forward(&mut self, x: ArrayView2<'_, f32>, mode: Mode) -> Array2<f32> {
        forward_layers(&mut self.layers, &self.input_shape, x, mode)
    }

    /// One training step's loss and gradients (which replace the previous ones).
    ///
    /// `x`: `[B, D]`; `y`: `[B]`; `teacher`: `[B, C]` soft labels at τ when α > 0 (a view of
    /// probabilities converts).
    pub fn loss_and_grad(
        &mut self,
        x: ArrayView2<'_, f32>,
        y: &[u32],
        teacher: Option<SoftLabels<'_>>,
        kd: Kd,
    ) -> f32 {
        self.training_step(x, y, teacher, kd, false).0
    }

    /// [`Network::loss_and_grad`] that also returns the batch's logits `[B, C]` of the
    /// training-mode forward pass (before the update), when `keep_logits`.
    pub fn training_step(
        &mut self,
        x: ArrayView2<'_, f32>,
        y: &[u32],
        teacher: Option<SoftLabels<'_>>,
        kd: Kd,
        keep_logits: bool,
    ) -> (f32, Option<Array2<f32>>) {
        let out = self.training_step_with(
            x,
            y,
            teacher,
            kd,
            StepOptions {
                keep_logits,
                ..StepOptions::default()
            },
        );
        (out.loss, out.logits)
    }

    /// [`Network::training_step`] with per-example weights `[B]` of the loss and, when asked,
    /// each example's unweighted loss `[B]` back (InfoBatch's scores and rescaling).
    pub fn training_step_with(
        &mut self,
        x: ArrayView2<'_, f32>,
        y: &[u32],
        teacher: Option<SoftLabels<'_>>,
        kd: Kd,
        options: StepOptions<'_>,
    ) -> StepOutput {
        let StepOptions {
            keep_logits,
            weights,
            per_example_losses,
        } = options;
        let b = x.nrows();
        assert_eq!(y.len(), b, "one label per row");
        assert!(weights.is_none_or(|w| w.len() == b), "one weight per row");
        let mut losses = per_example_losses.then(|| vec![0f32; b]);
        let shards = if self.layers.iter().any(|l| l.couples_examples()) {
            1
        } else {
            b.div_ceil(SHARD_ROWS).max(1)
        };
        self.pending_parts = 0;
        if shards == 1 {
            let per_example = PerExample {
                weights,
                losses: losses.as_deref_mut(),
            };
            let (loss, logits) = shard_step(
                &mut self.layers,
                &self.input_shape,
                x,
                y,
                teacher,
                kd,
                1.0,
                per_example,
            );
            return StepOutput {
                loss,
                logits: keep_logits.then_some(logits),
                losses,
            };
        }
        while self.replicas.len() < shards {
            let stream = self.replicas.len() as u64 + 1;
            let mut replica: Vec<Box<dyn Layer>> =
                self.layers.iter().map(|l| l.replicate(stream)).collect();
            detach(&mut replica);
            // The shards' weight gradients are summed after the shards, block by block
            // (`weight_grad`), where its kernel runs.
            for layer in replica.iter_mut() {
                layer.defer_weight_grad(weight_grad::vectorised());
            }
            self.replicas.push(replica);
        }
        let shared: Vec<SharedTensor> =
            self.layers.iter().flat_map(|l| l.shared_params()).collect();
        let input_shape = &self.input_shape;
        // Each shard's rows of the per-example losses, disjoint.
        let mut loss_parts: Vec<Option<&mut [f32]>> = match losses.as_deref_mut() {
            Some(all) => split_rows(all, b, shards).into_iter().map(Some).collect(),
            None => (0..shards).map(|_| None).collect(),
        };
        let outcomes: Vec<(f32, Option<Array2<f32>>)> = self.replicas[..shards]
            .par_iter_mut()
            .zip(loss_parts.par_iter_mut())
            .enumerate()
            .map(|(i, (replica, loss_part))| {
                let mut handles = shared.iter().cloned();
                for layer in replica.iter_mut() {
                    layer.use_params(&mut handles);
                }
                let rows = b * i / shards..b * (i + 1) / shards;
                let weight = rows.len() as f32 / b as f32;
                let t = teacher.map(|t| t.rows(rows.clone()));
                let per_example = PerExample {
                    weights: weights.map(|w| &w[rows.clone()]),
                    losses: loss_part.as_deref_mut(),
                };
                let (loss, logits) = gemm::serial(|| {
                    shard_step(
                        replica,
                        input_shape,
                        x.slice(s![rows.clone(), ..]),
                        &y[rows],
                        t,
                        kd,
                        weight,
                        per_example,
                    )
                });
                // Gives the parameters back, so that the optimiser owns them alone again.
                detach(replica);
                (loss * weight, keep_logits.then_some(logits))
            })
            .collect();
        drop(shared);
        self.pending_parts = shards;
        let loss = outcomes.iter().map(|(l, _)| l).sum();
        let logits = keep_logits.then(|| {
            let parts: Vec<ArrayView2<'_, f32>> = outcomes
                .iter()
                .filter_map(|(_, l)| l.as_ref().map(|l| l.view()))
                .collect();
            ndarray::concatenate(ndarray::Axis(0), &parts).expect("shards of one batch")
        });
        StepOutput {
            loss,
            logits,
            losses,
        }
    }

    /// Penultimate activations `[B, H]` (the input of the last dense layer) and logits
    /// `[B, C]` for `x` `[B, D]`, in evaluation mode.
    pub fn embed(&mut self, x: ArrayView2<'_, f32>) -> (Array2<f32>, Array2<f32>) {
        let (last, body) = self
            .layers
            .split_last_mut()
            .expect("a network has a last layer");
        let d: usize = self.input_shape.iter().product();
        assert_eq!(x.ncols(), d, "input width must match the network");
        let mut shape = vec![x.nrows()];
        shape.extend(&self.input_shape);
        let mut a = x
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&shape))
            .expect("standard layout");
        for layer in body.iter_mut() {
            a = layer.forward(a, Mode::Eval);
        }
        let embedding = a
            .clone()
            .into_dimensionality::<Ix2>()
            .expect("the last dense layer's input is flat");
        let logits = last
            .forward(a, Mode::Eval)
            .into_dimensionality::<Ix2>()
            .expect("the last layer is dense");
        (embedding, logits)
    }

    /// Sets the gradients of `layers` to the sum of those of the first `count` replicas,
    /// added in shard order.
    fn sum_replica_gradients(&mut self, count: usize) {
        let factors = take_weight_factors(&mut self.replicas[..count], self.layers.len());
        let views = factor_views(&factors);
        let mut replicas = replica_gradients(&mut self.replicas[..count]);
        let tensors = self
            .layers
            .iter_mut()
            .enumerate()
            .flat_map(|(l, layer)| {
                let deferred = views[l].as_ref();
                layer
                    .params()
                    .into_iter()
                    .enumerate()
                    .map(move |(k, p)| (p, deferred.filter(|_| k == 0)))
            })
            .enumerate()
            .filter_map(|(i, (p, deferred))| {
                if let Some(parts) = deferred {
                    let gradient = p.grad.as_slice_mut().expect("standard layout");
                    weight_grad::sum(parts, Sink::Store(gradient));
                    return None;
                }
                let mut operands = vec![Operand::write(p.grad)];
                operands.extend(replicas.iter_mut().map(|r| Operand::read(r[i])));
                Some(((), operands))
            })
            .collect();
        elementwise::for_each_chunk(tensors, |_, operands| {
            let (Operand::Write(sum), parts) = operands.split_first_mut().expect("operands") else {
                unreachable!("the first operand is the sum")
            };
            let part = |k: usize| match &parts[k] {
                Operand::Read(part) => *part,
                Operand::Write(_) => unreachable!("the others are read"),
            };
            // One pass over memory for the first two parts (the common two-shard step: the
            // sum is memory-bound), the same additions in the same order as a copy then adds.
            match parts.len() {
                0 => {}
                1 => sum.copy_from_slice(part(0)),
                _ => {
                    for ((s, a), b) in sum.iter_mut().zip(part(0)).zip(part(1)) {
                        *s = a + b;
                    }
                }
            }
            for k in 2..parts.len() {
                for (s, g) in sum.iter_mut().zip(part(k)) {
                    *s += g;
                }
            }
        });
    }

    /// Named tensors of the whole network (`<layer index>.<path>.<name>`), as in the files.
    pub fn state(&self) -> Vec<(String, &ArrayD<f32>)> {
        fn walk<'a>(
            layer: &'a dyn Layer,
            prefix: String,
            out: &mut Vec<(String, &'a ArrayD<f32>)>,
        ) {
            let children = layer.children();
            if children.is_empty() {
                out.extend(
                    layer
                        .state()
                        .into_iter()
                        .map(|(n, t)| (format!("{prefix}.{n}"), t)),
                );
            } else {
                for (i, c) in children.into_iter().enumerate() {
                    walk(c, format!("{prefix}.{i}"), out);
                }
            }
        }
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            walk(l.as_ref(), format!("{i}"), &mut out);
        }
        out
    }

    fn state_mut(&mut self) -> Vec<(String, &mut ArrayD<f32>)> {
        fn walk<'a>(
            layer: &'a mut Box<dyn Layer>,
            prefix: String,
            out: &mut Vec<(String, &'a mut ArrayD<f32>)>,
        ) {
            if layer.children().is_empty() {
                out.extend(
                    layer
                        .state_mut()
                        .into_iter()
                        .map(|(n, t)| (format!("{prefix}.{n}"), t)),
                );
            } else {
                for (i, c) in layer.children_mut().into_iter().enumerate() {
                    walk(c, format!("{prefix}.{i}"), out);
                }
            }
        }
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            walk(l, format!("{i}"), &mut out);
        }
        out
    }

    /// Writes the weights and buffers as safetensors (f32, little-endian).
    pub fn save_safetensors(&self, path: &Path) -> Result<(), String> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .state()
            .into_iter()
            .map(|(n, t)| {
                (
                    n,
                    t.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    t.shape().to_vec(),
                )
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(n, b, s)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut meta = HashMap::new();
        meta.insert("layers".to_string(), self.describe().join("; "));
        meta.insert("input_shape".to_string(), format!("{:?}", self.input_shape));
        let out = safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())?;
        std::fs::write(path, out).map_err(|e| format!("{}: cannot write: {e}", path.display()))
    }

    /// Loads weights saved by [`Network::save_safetensors`] into a network of the same specs.
    pub fn load_safetensors(&mut self, path: &Path) -> Result<(), String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| format!("{}: not a safetensors file: {e}", path.display()))?;
        for (name, tensor) in self.state_mut() {
            let view = st.tensor(&name).map_err(|_| {
                format!(
                    "{}: no tensor {name:?}; was it saved from the same layers?",
                    path.display()
                )
            })?;
            if view.shape() != tensor.shape() || view.dtype() != safetensors::Dtype::F32 {
                return Err(format!(
                    "{}: tensor {name:?} is {:?} {:?}, the network wants F32 {:?}",
                    path.display(),
                    view.dtype(),
                    view.shape(),
                    tensor.shape()
                ));
            }
            for (v, b) in tensor.iter_mut().zip(view.data().chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ok(())
    }

    /// The network as an ONNX model: input `input` `[N, ...input_shape]`, output `logits`
    /// `[N, num_classes]` (evaluation mode: running statistics, no dropout).
    pub fn to_onnx(&self) -> Vec<u8> {
        let mut graph = super::onnx_export::GraphBuilder::default();
        let mut x = "input".to_string();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let name = if i == last {
                "logits".to_string()
            } else {
                format!("l{i}")
            };
            x = l.to_onnx(&mut graph, &x, &name);
        }
        graph.finish("input", &self.input_shape, &x, self.num_classes)
    }
}

/// The specs with their positions in the manifest (for messages), in the order they run: a
/// ReLU directly followed by max pooling runs after it. The two commute exactly — the same
/// outputs, and the same input gradient, since a window whose maximum is not positive passes
/// no gradient either way — and the ReLU then touches a quarter of the values (with a 2 × 2
/// window) in each of its passes. The exported ONNX graph has that order too.
fn execution_order<'a>(specs: &[&'a LayerSpec]) -> Vec<(usize, &'a LayerSpec)> {
    let mut order: Vec<(usize, &LayerSpec)> = specs.iter().copied().enumerate().collect();
    let mut i = 0;
    while i + 1 < order.len() {
        if matches!(order[i].1, LayerSpec::Relu)
            && matches!(order[i + 1].1, LayerSpec::MaxPool { .. })
        {
            order.swap(i, i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::kd::Alpha;
    use crate::train::kd::Temperature;
    use crate::train::optim::OptimizerSpec;
    use crate::train::spec::parse_layer;
    use rand::Rng;

    fn specs(list: &[&str]) -> Vec<LayerSpec> {
        list.iter().map(|s| parse_layer(s).unwrap()).collect()
    }

    fn kd(alpha: f32) -> Kd {
        Kd {
            alpha: Alpha::new(alpha).unwrap(),
            temperature: Temperature::new(2.0).unwrap(),
        }
    }

    /// Central finite differences of the batch loss against the analytic gradient of every
    /// parameter (all values of small tensors, a spread of larger ones).
    fn check_gradients(layers: &[&str], input_shape: &[usize], alpha: f32) {
        check_gradients_of_batch(layers, input_shape, alpha, 3);
    }

    fn check_gradients_of_batch(layers: &[&str], input_shape: &[usize], alpha: f32, batch: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let d: usize = input_shape.iter().product();
        let x = Array2::from_shape_simple_fn((batch, d), || rng.gen_range(-1.0f32..1.0));
        let y: Vec<u32> = (0..batch).map(|i| [0u32, 2, 1][i % 3]).collect();
        let t = crate::tensor::softmax_rows(
            Array2::from_shape_simple_fn((batch, 3), || rng.gen_range(-2.0f32..2.0)).view(),
            2.0,
        );
        let spec = specs(layers);
        let mut net = Network::build(&spec, input_shape, 3, 5).unwrap();
        net.loss_and_grad(x.view(), &y, Some(t.view().into()), kd(alpha));
        let analytic: Vec<Vec<f32>> = net
            .params()
            .iter()
            .map(|p| p.grad.iter().copied().collect())
            .collect();
        let eps = 1e-3f32;
        let (mut checked, mut kinks) = (0usize, 0usize);
        let mut worst = (0.0f64, String::new());
        let count = analytic.len();
        for pi in 0..count {
            let len = analytic[pi].len();
            // Every value of small tensors, a spread of values of larger ones.
            let step = (len / 40).max(1);
            for vi in (0..len).step_by(step) {
                let loss_with = |delta: f32| {
                    let mut probe = Network::build(&spec, input_shape, 3, 5).unwrap();
                    {
                        let mut params = probe.params();
                        let v = params[pi].value.as_slice_mut().unwrap();
                        v[vi] += delta;
                    }
                    probe.loss_and_grad(x.view(), &y, Some(t.view().into()), kd(alpha)) as f64
                };
                let numeric = (loss_with(eps) - loss_with(-eps)) / (2.0 * eps as f64);
                let half = (loss_with(eps / 2.0) - loss_with(-eps / 2.0)) / eps as f64;
                checked += 1;
                // A ReLU input or a max-pool choice within eps of a tie makes the loss
                // non-differentiable there: the two estimates then disagree; skip the point.
                if (numeric - half).abs() > 0.1 * (numeric.abs() + 1e-2) {
                    kinks += 1;
                    continue;
                }
                let a = analytic[pi][vi] as f64;
                let err = (numeric - a).abs() / (2e-2 + numeric.abs());
                if err > worst.0 {
                    worst = (
                        err,
                        format!("param {pi} value {vi}: numeric {numeric} analytic {a}"),
                    );
                }
            }
        }
        assert!(
            kinks * 10 < checked,
            "{layers:?}: {kinks} of {checked} points at kinks"
        );
        assert!(
            worst.0 < 2e-2,
            "{layers:?}: worst relative error {} at {}",
            worst.0,
            worst.1
        );
    }

    #[test]
    fn max_pooling_then_relu_gives_the_bits_of_relu_then_max_pooling() {
        use crate::train::layers::{Layer, MaxPool2d, Mode, Relu};
        let order = execution_order(&[
            &LayerSpec::Relu,
            &LayerSpec::MaxPool {
                kernel: 2,
                stride: 2,
            },
            &LayerSpec::Relu,
        ]);
        assert_eq!(order.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 0, 2]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Windows all negative, with ties, with zeros; overlapping windows too (k3 s2).
        let x = ArrayD::from_shape_simple_fn(IxDyn(&[2, 3, 6, 6]), || {
            (rng.gen_range(-3i32..3) as f32) * 0.5
        });
        for (k, st) in [(2, 2), (3, 2), (2, 1)] {
            let mut pool_a = MaxPool2d::new([3, 6, 6], k, st);
            let mut relu_a = Relu::new(vec![3, 6, 6]);
            let pooled = pool_a.output_shape();
            let g =
                ArrayD::from_shape_simple_fn(IxDyn(&[2, pooled[0], pooled[1], pooled[2]]), || {
                    rng.gen_range(-1.0f32..1.0)
                });
            let y_a = pool_a.forward(relu_a.forward(x.clone(), Mode::Train), Mode::Train);
            let dx_a = relu_a.backward(pool_a.backward(g.clone()));
            let mut pool_b = MaxPool2d::new([3, 6, 6], k, st);
            let mut relu_b = Relu::new(pooled.clone());
            let y_b = relu_b.forward(pool_b.forward(x.clone(), Mode::Train), Mode::Train);
            let dx_b = pool_b.backward(relu_b.backward(g.clone()));
            assert_eq!(y_a, y_b, "k{k} s{st}: outputs");
            assert_eq!(dx_a, dx_b, "k{k} s{st}: input gradients");
        }
    }

    #[test]
    fn gradients_dense_relu() {
        check_gradients(&["dense 7", "relu", "dense 6", "relu"], &[5], 0.0);
        check_gradients(&["dense 7", "relu"], &[5], 0.5);
        check_gradients(&["dense 7", "relu"], &[5], 1.0);
    }

    /// A batch of 150 rows runs as three shards on replicas of the layers (with their own
    /// dropout masks). Layers without kinks: with 150 rows, some ReLU input is nearly always
    /// within the finite-difference step of zero.
    #[test]
    fn gradients_of_a_sharded_batch() {
        check_gradients_of_batch(&["dense 7", "dropout 0.3", "dense 6"], &[5], 0.5, 150);
        check_gradients_of_batch(&["conv 2 k3 p1", "avgpool 2"], &[1, 4, 4], 0.5, 150);
    }

    /// The shards' summed gradients and weighted losses equal those of the whole batch in one
    /// pass; a network with batch norm is not sharded (its statistics span the batch).
    #[test]
    fn sharded_step_equals_whole_batch_step() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let batch = 2 * SHARD_ROWS + 9;
        let x = Array2::from_shape_simple_fn((batch, 6), || rng.gen_range(-1.0f32..1.0));
        let y: Vec<u32> = (0..batch).map(|i| (i % 3) as u32).collect();
        let t = crate::tensor::softmax_rows(
            Array2::from_shape_simple_fn((batch, 3), || rng.gen_range(-2.0f32..2.0)).view(),
            2.0,
        );
        for (layers, shards) in [
            (vec!["dense 9", "relu", "dense 5"], 3),
            (vec!["dense 9", "bn"], 0),
        ] {
            let spec = specs(&layers);
            let mut sharded = Network::build(&spec, &[6], 3, 1).unwrap();
            let (loss, logits) =
                sharded.training_step(x.view(), &y, Some(t.view().into()), kd(0.5), true);
            assert_eq!(sharded.replicas.len(), shards, "{layers:?}");
            let mut whole = Network::build(&spec, &[6], 3, 1).unwrap();
            let (whole_loss, whole_logits) = shard_step(
                &mut whole.layers,
                &[6],
                x.view(),
                &y,
                Some(t.view().into()),
                kd(0.5),
                1.0,
                PerExample::default(),
            );
            assert!((loss - whole_loss).abs() < 1e-5, "{loss} vs {whole_loss}");
            // The observer's logits: the shards' rows in batch order.
            let logits = logits.expect("asked for the logits");
            assert_eq!(logits.dim(), whole_logits.dim());
            for (a, b) in logits.iter().zip(whole_logits.iter()) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
            for (a, b) in sharded.params().iter().zip(whole.params().iter()) {
                for (ga, gb) in a.grad.iter().zip(b.grad.iter()) {
                    assert!((ga - gb).abs() < 1e-5 * (1.0 + gb.abs()), "{ga} vs {gb}");
                }
            }
        }
    }

    /// Shards are fixed by the batch size and every sum runs in a fixed order, so one thread
    /// and three give the same bits.
    #[test]
    fn the_optimiser_summing_the_shards_gives_the_bits_of_summing_first() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let batch = 3 * SHARD_ROWS + 11;
        let x = Array2::from_shape_simple_fn((batch, 6), || rng.gen_range(-1.0f32..1.0));
        let y: Vec<u32> = (0..batch).map(|i| (i % 3) as u32).collect();
        let spec = specs(&["dense 9", "relu", "dense 3"]);
        for optimizer in [
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
            let mut fused = Network::build(&spec, &[6], 3, 1).unwrap();
            let mut summed = Network::build(&spec, &[6], 3, 1).unwrap();
            let mut fused_opt = Optimizer::new(optimizer, 5e-4);
            let mut summed_opt = Optimizer::new(optimizer, 5e-4);
            for _ in 0..3 {
                fused.training_step(x.view(), &y, None, kd(0.0), false);
                assert_eq!(fused.pending_parts, 4, "four shards left unsummed");
                fused.update(&mut fused_opt, 0.1);
                summed.training_step(x.view(), &y, None, kd(0.0), false);
                let params = summed.params();
                summed_opt.step(params, 0.1);
            }
            for (a, b) in fused.params().iter().zip(summed.params().iter()) {
                assert_eq!(a.value, b.value, "{optimizer:?}");
            }
        }
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let batch = SHARD_ROWS + 30;
        let x = Array2::from_shape_simple_fn((batch, 36), || rng.gen_range(-1.0f32..1.0));
        let y: Vec<u32> = (0..batch).map(|i| (i % 3) as u32).collect();
        let spec = specs(&[
            "conv 4 k3 p1",
            "relu",
            "maxpool 2",
            "dropout 0.2",
            "dense 8",
            "relu",
        ]);
        let grads_with = |threads| gradients_on(threads, &spec, &[1, 6, 6], 3, &x, &y);
        assert_eq!(grads_with(1), grads_with(3));
    }

    /// The parameter gradients of one step of a fresh network (`spec` on `[N, shape]` inputs,
    /// `classes` outputs, seed 2) on `x` and `y`, computed on a pool of `threads`.
    fn gradients_on(
        threads: usize,
        spec: &[LayerSpec],
        shape: &[usize],
        classes: usize,
        x: &Array2<f32>,
        y: &[u32],
    ) -> Vec<Vec<f32>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut net = Network::build(spec, shape, classes, 2).unwrap();
            net.loss_and_grad(x.view(), y, None, kd(0.0));
            net.params()
                .iter()
                .map(|p| p.grad.iter().copied().collect())
                .collect()
        })
    }

    #[test]
    fn a_batch_norm_resnet_has_the_same_gradients_on_any_thread_count() {
        // Unsharded (batch norm couples the examples), so its products are split across the
        // cores; the 1 × 1 stride-2 shortcut's weight gradient is `g · colsᵀ`, with a long
        // inner dimension, whose `gemm` sums once followed the split.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let batch = 128;
        let x = Array2::from_shape_simple_fn((batch, 3 * 32 * 32), || rng.gen_range(-1.0f32..1.0));
        let y: Vec<u32> = (0..batch).map(|i| (i % 10) as u32).collect();
        let spec = specs(&["conv 16 k3 p1", "bn", "relu", "res 32 s2", "gap"]);
        let grads_with = |threads| gradients_on(threads, &spec, &[3, 32, 32], 10, &x, &y);
        let one = grads_with(1);
        assert_eq!(one, grads_with(2), "two threads");
        assert_eq!(one, grads_with(3), "three threads");
    }

    #[test]
    fn absorbed_relus_train_the_same_weights_as_relu_layers() {
        // Three SGD steps of a batch-norm ResNet (ReLUs after batch norm and after the
        // blocks' adds, a dense batch norm too) with every ReLU its own pass, and with them
        // absorbed: the same weights and running statistics to the bit.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let batch = 24;
        let x = Array2::from_shape_simple_fn((batch, 3 * 12 * 12), || rng.gen_range(-1.0f32..1.0));
        let y: Vec<u32> = (0..batch).map(|i| (i % 4) as u32).collect();
        let spec = specs(&[
            "conv 8 k3 p1",
            "bn",
            "relu",
            "res 8",
            "res 16 s2",
            "gap",
            "dense 12",
            "bn",
            "relu",
        ]);
        let train = |fuse: bool| {
            let mut net = Network::build_layers(&spec, &[3, 12, 12], 4, 3, fuse).unwrap();
            let mut opt = Optimizer::new(
                OptimizerSpec::Sgd {
                    momentum: 0.9,
                    nesterov: false,
                },
                5e-4,
            );
            for _ in 0..3 {
                net.training_step(x.view(), &y, None, kd(0.0), false);
                net.update(&mut opt, 0.1);
            }
            net.state()
                .iter()
                .map(|(_, t)| t.iter().map(|v| v.to_bits()).collect::<Vec<u32>>())
                .collect::<Vec<_>>()
        };
        assert!(
            train(false) == train(true),
            "absorbing the ReLUs changed the weights"
        );
    }

    #[test]
    fn gradients_conv_stride_padding() {
        // Same-size, stride-1 convolutions (one shift per kernel offset, masked columns),
        // with kernels 3, 5 and 1 on a non-square plane...
        check_gradients(&["conv 3 k3 s1 p1"], &[2, 5, 5], 0.5);
        check_gradients(
            &["conv 2 k1 s1 p0", "conv 2 k5 s1 p2", "conv 2 k3 s1 p1"],
            &[2, 4, 6],
            0.5,
        );
        // ...and the general path: stride 2, and padding that changes the size.
        check_gradients(
            &["conv 2 k3 s2 p0", "conv 2 k2 s1 p1 nobias"],
            &[2, 6, 6],
            0.0,
        );
    }

    #[test]
    fn gradients_pooling() {
        check_gradients(&["conv 2 k3 p1", "maxpool 2"], &[1, 6, 6], 0.5);
        check_gradients(&["conv 2 k3 p1", "avgpool 2 s1"], &[1, 5, 5], 0.5);
        check_gradients(&["conv 3 k3 p1", "gap"], &[1, 4, 4], 0.5);
    }

    #[test]
    fn gradients_batchnorm() {
        check_gradients(&["conv 2 k3 p1", "bn", "relu"], &[1, 4, 4], 0.5);
        check_gradients(&["dense 4", "bn", "relu"], &[5], 0.0);
    }

    #[test]
    fn gradients_residual_blocks() {
        check_gradients(&["conv 2 k3 p1", "res 2"], &[1, 4, 4], 0.5);
        check_gradients(&["res 3 s2"], &[2, 4, 4], 0.5);
    }

    #[test]
    fn a_profiled_step_times_every_leaf_kind_and_the_residual_add() {
        use crate::train::profile::{self, Pass};
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x = Array2::from_shape_simple_fn((4, 2 * 6 * 6), || rng.gen_range(-1.0f32..1.0));
        // The first ReLU is its own layer; the others are absorbed and not timed.
        let spec = specs(&[
            "conv 3 k3 p1",
            "relu",
            "bn",
            "relu",
            "res 3",
            "res 4 s2",
            "gap",
        ]);
        let mut net = Network::build(&spec, &[2, 6, 6], 3, 5).unwrap();
        profile::set_enabled(true);
        net.loss_and_grad(x.view(), &[0, 1, 2, 0], None, kd(0.0));
        profile::set_enabled(false);
        let times = profile::take();
        let has = |kind: &str, pass: Pass| {
            times
                .iter()
                .any(|t| t.kind == kind && t.pass == pass && t.calls > 0 && t.seconds >= 0.0)
        };
        for kind in [
            "conv k3 s1",
            "conv k3 s2",
            "conv k1 s2",
            "bn",
            "relu",
            "gap",
            "dense",
            "residual copy and add",
        ] {
            assert!(has(kind, Pass::Forward), "{kind} forward: {times:?}");
        }
        for kind in [
            "conv k3 s1",
            "conv k1 s2",
            "bn",
            "relu",
            "dense",
            "residual copy and add",
        ] {
            assert!(has(kind, Pass::Backward), "{kind} backward: {times:?}");
        }
        let relu_calls: u64 = times
            .iter()
            .filter(|t| t.kind == "relu")
            .map(|t| t.calls)
            .sum();
        assert_eq!(
            relu_calls, 2,
            "only the unabsorbed ReLU is timed: {times:?}"
        );
        assert!(
            !times.iter().any(|t| t.kind.starts_with("res ")),
            "blocks are not leaves"
        );
    }

    #[test]
    fn dropout_scales_in_training_and_is_identity_in_evaluation() {
        let mut layer = crate::train::layers::Dropout::new(0.5, vec![1000], 3);
        let x = ArrayD::from_elem(IxDyn(&[2, 1000]), 1.0f32);
        let mut replica = layer.replicate(1);
        let y = layer.forward(x.clone(), Mode::Train);
        let kept = y.iter().filter(|&&v| v != 0.0).count();
        // A replica for another shard draws other masks.
        assert_ne!(replica.forward(x.clone(), Mode::Train), y);
        assert!((800..1200).contains(&kept), "{kept}");
        assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
        // The gradient goes through the same mask.
        let g = layer.backward(ArrayD::from_elem(IxDyn(&[2, 1000]), 1.0));
        assert_eq!(g, y);
        assert_eq!(layer.forward(x.clone(), Mode::Eval), x);
    }

    #[test]
    fn bad_specs_fail_at_build() {
        let err = Network::build(&specs(&["conv 4"]), &[784], 10, 0)
            .err()
            .unwrap();
        assert!(err.contains("needs image input"), "{err}");
        let err = Network::build(&specs(&["maxpool 9"]), &[1, 4, 4], 10, 0)
            .err()
            .unwrap();
        assert!(err.contains("window larger"), "{err}");
    }

    #[test]
    fn torch_init_draws_weights_and_biases_within_one_over_root_fan_in() {
        let net = Network::build_with_init(
            &super::super::spec::mlp(&[32]),
            &[50],
            10,
            3,
            super::super::spec::Init::Torch,
        )
        .unwrap();
        let he = Network::build(&super::super::spec::mlp(&[32]), &[50], 10, 3).unwrap();
        let state = net.state();
        let (w1, b1, w2, b2) = (state[0].1, state[1].1, state[2].1, state[3].1);
        let bound = |fan_in: usize| 1.0 / (fan_in as f32).sqrt();
        assert!(w1.iter().all(|v| v.abs() <= bound(50)) && b1.iter().all(|v| v.abs() <= bound(50)));
        assert!(w2.iter().all(|v| v.abs() <= bound(32)) && b2.iter().all(|v| v.abs() <= bound(32)));
        assert!(b1.iter().any(|&v| v != 0.0), "PyTorch draws biases too");
        // He: larger weights (sqrt(6/50) > 1/sqrt(50)) and zero biases.
        let he_state = he.state();
        assert!(he_state[1].1.iter().all(|&v| v == 0.0));
        assert!(he_state[0].1.iter().any(|v| v.abs() > bound(50)));
    }

    #[test]
    fn safetensors_round_trip() {
        let spec = specs(&[
            "conv 4 k3 p1",
            "bn",
            "relu",
            "res 4 s2",
            "gap",
            "dense 8",
            "relu",
        ]);
        let mut a = Network::build(&spec, &[1, 8, 8], 3, 1).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x = Array2::from_shape_simple_fn((4, 64), || rng.gen_range(-1.0f32..1.0));
        // Train-mode passes move the running statistics away from their initial values.
        for _ in 0..3 {
            a.loss_and_grad(x.view(), &[0, 1, 2, 0], None, kd(0.0));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.safetensors");
        a.save_safetensors(&path).unwrap();
        let mut b = Network::build(&spec, &[1, 8, 8], 3, 99).unwrap();
        assert_ne!(
            a.forward(x.view(), Mode::Eval),
            b.forward(x.view(), Mode::Eval)
        );
        b.load_safetensors(&path).unwrap();
        assert_eq!(
            a.forward(x.view(), Mode::Eval),
            b.forward(x.view(), Mode::Eval)
        );
        let mut c = Network::build(&specs(&["dense 8"]), &[1, 8, 8], 3, 0).unwrap();
        assert!(c.load_safetensors(&path).unwrap_err().contains("wants"));
    }
}
