//! The training loop: a fresh student trained on a `TrainSet` with the KD loss (an optional
//! online teacher and `Observer`), and evaluation.

use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Zip};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::error::TrainError;
use super::kd::Kd;
use super::kernels::{gemm, gemm_bf16, subnormal};
use super::layers::Mode;
use super::network::{Network, StepOptions};
use super::spec::StudentSpec;
use super::{loss, optim};
use crate::progress;

/// What the student learns from.
pub struct TrainSet<'a> {
    /// `[K, D]` normalised features of the kept examples.
    pub x: ArrayView2<'a, f32>,
    /// Shape of one example, product `D`.
    pub sample_shape: &'a [usize],
    /// `[K]` labels.
    pub y: &'a [u32],
    /// `[K, C]` teacher log-space scores; required when `alpha > 0`.
    pub teacher: Option<ArrayView2<'a, f32>>,
    pub num_classes: usize,
}

/// Per-epoch record of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f32,
    pub lr: f32,
    /// Wall time of the epoch's steps (gathering, augmenting, teacher, forward, backward,
    /// update), seconds.
    pub seconds: f64,
    /// Examples the epoch trained on: `K`, fewer in an epoch InfoBatch prunes.
    pub examples: usize,
}

/// A teacher run on each augmented batch: student-normalised examples `[B, D]` in,
/// log-space scores `[B, C]` out.
pub type OnlineTeacher<'a> = &'a mut dyn FnMut(ArrayView2<'_, f32>) -> Result<Array2<f32>, String>;

/// Lends an online teacher to one training run and keeps it for the next.
pub fn lend<'s>(online: &'s mut Option<OnlineTeacher<'_>>) -> Option<OnlineTeacher<'s>> {
    match online {
        Some(teacher) => Some(&mut **teacher),
        None => None,
    }
}

/// Watches a training run (how training dynamics are recorded, by the trainer the students
/// use): the loop calls it at fixed points and never changes what it trains because of it.
pub trait Observer: Send {
    /// Whether [`Observer::on_batch`] wants the logits (copying them costs a little).
    fn wants_batch_logits(&self) -> bool;
    /// After the training-mode forward pass of a batch, before its update.
    ///
    /// `indices`: `[B]` positions in the training set; `labels`: `[B]`; `logits`: `[B, C]`.
    fn on_batch(
        &mut self,
        epoch: usize,
        indices: &[usize],
        labels: &[u32],
        logits: ArrayView2<'_, f32>,
    );
    /// Before update `step` (0: the network as initialised), with the network as it is.
    fn before_step(&mut self, step: usize, model: &mut Network) -> Result<(), TrainError>;
    /// After epoch `epoch` (0-based) ends.
    fn on_epoch_end(&mut self, epoch: usize, model: &mut Network) -> Result<(), TrainError>;
}

/// Trains a fresh student. Same inputs and seed give the same model.
///
/// With `online` (and α > 0) the soft labels of every batch come from running it on the
/// augmented batch; otherwise from `data.teacher`.
pub fn train(
    spec: &StudentSpec,
    data: &TrainSet<'_>,
    kd: Kd,
    seed: u64,
    online: Option<OnlineTeacher<'_>>,
) -> Result<(Network, Vec<EpochLog>), TrainError> {
    train_observed(spec, data, kd, seed, online, None, "student")
}

/// [`train`] with an [`Observer`]; `label` names the progress bar.
pub fn train_observed(
    spec: &StudentSpec,
    data: &TrainSet<'_>,
    kd: Kd,
    seed: u64,
    online: Option<OnlineTeacher<'_>>,
    observer: Option<&mut dyn Observer>,
    label: &str,
) -> Result<(Network, Vec<EpochLog>), TrainError> {
    subnormal::apply();
    // On a worker of rayon's pool: a parallel call from a thread outside the pool hands its
    // work over and sleeps on a futex until it is done, several times a step; from a worker it
    // is a join (one-thread MLP 61–63k → 92–96k samples/s, docs/performance.md). An online
    // teacher (a plugin's model is not `Send`) keeps the loop on this thread.
    match online {
        None => rayon::scope(|_| train_loop(spec, data, kd, seed, None, observer, label)),
        online => train_loop(spec, data, kd, seed, online, observer, label),
    }
}

/// The body of [`train_observed`], on whichever thread it chose.
fn train_loop(
    spec: &StudentSpec,
    data: &TrainSet<'_>,
    kd: Kd,
    seed: u64,
    mut online: Option<OnlineTeacher<'_>>,
    mut observer: Option<&mut dyn Observer>,
    label: &str,
) -> Result<(Network, Vec<EpochLog>), TrainError> {
    check_train_set(data)?;
    if !kd.alpha.needs_teacher() {
        online = None;
    }
    let soft = cached_soft_labels(data, kd, online.is_none())?;
    let image_shape = image_shape(spec, data)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = build_model(spec, data, seed)?;
    let mut opt = optim::Optimizer::new(spec.optimizer, spec.weight_decay);
    let (k, d) = data.x.dim();
    let c = data.num_classes;
    let batch = spec.batch_size.min(k);
    let steps_per_epoch = k.div_ceil(batch);
    let schedule = optim::LrSchedule::new(
        spec.schedule,
        spec.lr,
        spec.epochs,
        steps_per_epoch,
        spec.warmup_epochs,
    );
    let mut order: Vec<usize> = (0..k).collect();
    let mut sampler = spec
        .infobatch
        .map(|ib| super::infobatch::Sampler::new(ib, k, spec.epochs));
    let mut weights = Vec::new();
    let mut buffers = Batch::new(batch, d, c);
    // Grown as epochs end: `epochs` is the user's number, not a size to allocate up front.
    let mut logs = Vec::new();
    let bar = progress::samples_bar((spec.epochs * k) as u64, label);
    let keep_logits = observer.as_ref().is_some_and(|o| o.wants_batch_logits());
    let mut step = 0;
    for epoch in 0..spec.epochs {
        let visited;
        let epoch_order: &[usize] = match sampler.as_mut() {
            Some(s) => {
                visited = s.epoch_order(epoch, &mut rng);
                &visited
            }
            None => {
                order.shuffle(&mut rng);
                &order
            }
        };
        let epoch_steps = epoch_order.len().div_ceil(batch);
        let epoch_started = std::time::Instant::now();
        let mut epoch_loss = 0.0f64;
        for (i, chunk) in epoch_order.chunks(batch).enumerate() {
            let b = chunk.len();
            buffers.gather(data, chunk, soft.as_ref());
            if let (true, Some(shape)) = (spec.augment.is_active(), image_shape) {
                spec.augment
                    .apply(buffers.x.slice_mut(s![..b, ..]), shape, &mut rng);
            }
            if let Some(teacher) = online.as_mut() {
                buffers.label_online(teacher, b, kd)?;
            }
            let t = (soft.is_some() || online.is_some()).then(|| buffers.soft_labels(b));
            if let Some(o) = observer.as_mut() {
                o.before_step(step, &mut model)?;
            }
            let options = StepOptions {
                keep_logits,
                weights: sampler.as_ref().map(|s| {
                    s.weights_of(chunk, &mut weights);
                    &weights[..]
                }),
                per_example_losses: sampler.is_some(),
            };
            let out = model.training_step_with(
                buffers.x.slice(s![..b, ..]),
                &buffers.y[..b],
                t,
                kd,
                options,
            );
            if let (Some(o), Some(logits)) = (observer.as_mut(), out.logits) {
                o.on_batch(epoch, chunk, &buffers.y[..b], logits.view());
            }
            if let (Some(s), Some(losses)) = (sampler.as_mut(), out.losses.as_deref()) {
                s.record(chunk, losses);
            }
            // A pruned epoch has fewer steps; the schedule still moves by epochs.
            let at = epoch * steps_per_epoch + i * steps_per_epoch / epoch_steps;
            update(spec, &mut model, &mut opt, schedule.at(at));
            epoch_loss += out.loss as f64 * b as f64;
            step += 1;
            bar.inc(b as u64);
        }
        let examples = epoch_order.len();
        let loss = (epoch_loss / examples as f64) as f32;
        if !loss.is_finite() {
            return Err(diverged(spec, epoch, loss));
        }
        let seconds = epoch_started.elapsed().as_secs_f64();
        if let Some(o) = observer.as_mut() {
            o.on_epoch_end(epoch, &mut model)?;
        }
        logs.push(EpochLog {
            epoch,
            loss,
            lr: schedule.at((epoch + 1) * steps_per_epoch - 1),
            seconds,
            examples,
        });
        tracing::debug!(epoch, loss, seconds, "epoch done");
    }
    bar.finish_and_clear();
    Ok((model, logs))
}

/// The examples a run trained on over its epochs, when it prunes during training
/// (`[student] infobatch`); `None` otherwise (it is then `epochs × K`).
pub fn examples_seen(spec: &StudentSpec, logs: &[EpochLog]) -> Option<usize> {
    spec.infobatch
        .map(|_| logs.iter().map(|l| l.examples).sum())
}

/// Checks the set's shapes against each other: rows, labels and the sample shape.
fn check_train_set(data: &TrainSet<'_>) -> Result<(), TrainError> {
    let (k, d) = data.x.dim();
    if data.y.len() != k {
        return Err(TrainError::Shape(format!(
            "{k} rows but {} labels",
            data.y.len()
        )));
    }
    if k == 0 {
        return Err(TrainError::Shape("no examples to train on".into()));
    }
    if data.sample_shape.iter().product::<usize>() != d {
        return Err(TrainError::Shape(format!(
            "sample shape {:?} for rows of {d}",
            data.sample_shape
        )));
    }
    Ok(())
}

/// The image shape `[C, H, W]` when the examples are images; an error when augmentation asks
/// for images and they are not.
fn image_shape(spec: &StudentSpec, data: &TrainSet<'_>) -> Result<Option<[usize; 3]>, TrainError> {
    let image_shape = match data.sample_shape {
        [c, h, w] => Some([*c, *h, *w]),
        _ => None,
    };
    if spec.augment.is_active() && image_shape.is_none() {
        return Err(TrainError::Shape(format!(
            "[student.augment] needs image examples [C, H, W], the data's are {:?}",
            data.sample_shape
        )));
    }
    Ok(image_shape)
}

/// The soft labels of the whole set at τ, `[K, C]`, and each row's negative entropy `[K]`
/// (the KL term's teacher half, once per example rather than a logarithm per step); `None`
/// without distillation or when an online teacher labels each batch instead (`cached` false).
fn cached_soft_labels(
    data: &TrainSet<'_>,
    kd: Kd,
    cached: bool,
) -> Result<Option<CachedSoftLabels>, TrainError> {
    let (k, c) = (data.x.nrows(), data.num_classes);
    match (kd.alpha.needs_teacher() && cached, data.teacher) {
        (false, _) => Ok(None),
        (true, None) => Err(TrainError::Shape("alpha > 0 needs teacher scores".into())),
        (true, Some(t)) => {
            if t.dim() != (k, c) {
                return Err(TrainError::Shape(format!(
                    "teacher scores have shape {:?}, expected [{k}, {c}]",
                    t.dim()
                )));
            }
            let probs = crate::tensor::softmax_rows(t, kd.temperature.get());
            let neg_entropy = loss::neg_entropy(probs.view());
            Ok(Some(CachedSoftLabels { probs, neg_entropy }))
        }
    }
}

/// The whole set's soft labels `[K, C]` and their rows' negative entropies `[K]`.
struct CachedSoftLabels {
    probs: Array2<f32>,
    neg_entropy: Array1<f32>,
}

/// A fresh network for the set's shapes, drawn by `seed`, at the spec's precision.
fn build_model(spec: &StudentSpec, data: &TrainSet<'_>, seed: u64) -> Result<Network, TrainError> {
    let mut model = Network::build_with_init(
        &spec.layers,
        data.sample_shape,
        data.num_classes,
        seed,
        spec.init,
    )
    .map_err(TrainError::Model)?;
    model.set_precision(spec.precision);
    if spec.precision == gemm::Precision::Bf16 {
        // Once per process, not once per cell.
        static WARNED: std::sync::Once = std::sync::Once::new();
        if let Some(warning) = gemm_bf16::slower_warning() {
            WARNED.call_once(|| tracing::warn!("{warning}"));
        }
    }
    Ok(model)
}

/// The optimiser's step at rate `lr`, with the gradient's norm clipped first when asked.
fn update(spec: &StudentSpec, model: &mut Network, opt: &mut optim::Optimizer, lr: f32) {
    match spec.clip_grad_norm {
        Some(max_norm) => {
            let mut params = model.params();
            optim::clip_grad_norm(&mut params, max_norm);
            opt.step(params, lr);
        }
        None => model.update(opt, lr),
    }
}

/// The error of a run whose epoch `epoch` ended with a loss that is not finite, with what to
/// change given what is set.
fn diverged(spec: &StudentSpec, epoch: usize, loss: f32) -> TrainError {
    let advice = match spec.clip_grad_norm {
        None => "lower [student] lr or set clip_grad_norm (e.g. 5.0)".to_string(),
        Some(c) => format!("lower [student] lr, or clip_grad_norm (now {c}), or add warmup_epochs"),
    };
    TrainError::Diverged {
        epoch,
        loss,
        advice,
    }
}

/// A batch's buffers, reused by every step: examples `x` `[B, D]`, labels `y` `[B]`, soft
/// labels `t` `[B, C]` and their negative entropies `e` `[B]`.
struct Batch {
    x: Array2<f32>,
    y: Vec<u32>,
    t: Array2<f32>,
    e: Array1<f32>,
}

impl Batch {
    fn new(batch: usize, d: usize, c: usize) -> Self {
        Self {
            x: Array2::zeros((batch, d)),
            y: vec![0; batch],
            t: Array2::zeros((batch, c)),
            e: Array1::zeros(batch),
        }
    }

    /// Rows `chunk` of the set, and of the cached soft labels when there are some.
    fn gather(&mut self, data: &TrainSet<'_>, chunk: &[usize], soft: Option<&CachedSoftLabels>) {
        let b = chunk.len();
        gather_rows(data.x, chunk, self.x.slice_mut(s![..b, ..]));
        if let Some(soft) = soft {
            gather_rows(soft.probs.view(), chunk, self.t.slice_mut(s![..b, ..]));
            for (to, &i) in self.e.iter_mut().zip(chunk) {
                *to = soft.neg_entropy[i];
            }
        }
        for (label, &i) in self.y.iter_mut().zip(chunk) {
            *label = data.y[i];
        }
    }

    /// The soft labels of the first `b` (augmented) rows from the online teacher.
    fn label_online(
        &mut self,
        teacher: &mut OnlineTeacher<'_>,
        b: usize,
        kd: Kd,
    ) -> Result<(), TrainError> {
        let c = self.t.ncols();
        let scores = teacher(self.x.slice(s![..b, ..])).map_err(TrainError::Teacher)?;
        if scores.dim() != (b, c) {
            return Err(TrainError::Teacher(format!(
                "online teacher gave scores of shape {:?} for a batch of {b}",
                scores.dim()
            )));
        }
        let probs = crate::tensor::softmax_rows(scores.view(), kd.temperature.get());
        self.t.slice_mut(s![..b, ..]).assign(&probs);
        self.e
            .slice_mut(s![..b])
            .assign(&loss::neg_entropy(probs.view()));
        Ok(())
    }

    /// The soft labels of the first `b` rows, as the loss reads them.
    fn soft_labels(&self, b: usize) -> loss::SoftLabels<'_> {
        loss::SoftLabels {
            probs: self.t.slice(s![..b, ..]),
            neg_entropy: Some(self.e.slice(s![..b])),
        }
    }
}

/// Copies rows `indices` of `from` `[N, D]` into `to` `[indices.len(), D]`, rows spread over
/// the cores (a batch of random rows from a large array waits mostly on memory).
fn gather_rows(from: ArrayView2<'_, f32>, indices: &[usize], mut to: ArrayViewMut2<'_, f32>) {
    assert_eq!(
        to.dim(),
        (indices.len(), from.ncols()),
        "gather target shape"
    );
    let d = from.ncols();
    let (Some(src), Some(dst)) = (from.as_slice(), to.as_slice_mut()) else {
        Zip::from(to.rows_mut())
            .and(ArrayView1::from(indices))
            .par_for_each(|mut row, &i| row.assign(&from.row(i)));
        return;
    };
    if d == 0 {
        return;
    }
    // Whole rows by `copy_from_slice`, a few tasks per batch: a task per row cost more in
    // scheduling than the copy (6 % of an MLP step in a profile).
    let rows_per_task = indices.len().div_ceil(4).max(1);
    dst.par_chunks_mut(rows_per_task * d)
        .zip(indices.par_chunks(rows_per_task))
        .for_each(|(out, rows)| {
            for (out, &i) in out.chunks_exact_mut(d).zip(rows) {
                out.copy_from_slice(&src[i * d..(i + 1) * d]);
            }
        });
}

/// Accuracy of `model` on `x` `[N, D]` against `y` `[N]` (evaluation mode).
pub fn evaluate(model: &mut Network, x: ArrayView2<'_, f32>, y: &[u32]) -> f64 {
    let mut correct = 0usize;
    for start in (0..x.nrows()).step_by(512) {
        let end = (start + 512).min(x.nrows());
        let logits = model.forward(x.slice(s![start..end, ..]), Mode::Eval);
        for (row, &label) in logits.rows().into_iter().zip(&y[start..end]) {
            if crate::tensor::argmax(row.as_slice().unwrap_or(&[])) == label as usize {
                correct += 1;
            }
        }
    }
    correct as f64 / y.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::kd::{Alpha, Temperature};

    /// The same student, bit for bit, whatever the number of cores: products are split by
    /// blocks of the output, each computed whole by one kernel, and reductions run over
    /// fixed chunks.
    #[test]
    fn training_gives_the_same_bits_on_one_and_on_three_threads() {
        let manifest = crate::manifest::parse(
            std::path::Path::new("/tmp/m.toml"),
            "output = \"out\"\n[data]\nformat = \"csv\"\ntrain = \"t.csv\"\nlabel = -1\nholdout = 0.2\n[student]\nhidden = [96, 64]\nepochs = 2\nbatch_size = 64\nlr = 0.05\nclip_grad_norm = 5.0\n[[prune]]\nmethod = \"random\"\nkeep = [0.5]\n",
        )
        .unwrap();
        let n = 600;
        let d = 200;
        let x = Array2::from_shape_fn((n, d), |(i, j)| {
            (((i * 31 + j * 17) % 97) as f32 / 97.0) - 0.5
        });
        let y: Vec<u32> = (0..n).map(|i| (i % 7) as u32).collect();
        let teacher = Array2::from_shape_fn((n, 7), |(i, c)| if c == i % 7 { 2.0 } else { 0.0 });
        let set = TrainSet {
            x: x.view(),
            sample_shape: &[d],
            y: &y,
            teacher: Some(teacher.view()),
            num_classes: 7,
        };
        let kd = Kd {
            alpha: Alpha::new(0.5).unwrap(),
            temperature: Temperature::new(4.0).unwrap(),
        };
        // Unsharded batches with clipping; sharded ones whose optimiser sums the shards; in f32
        // and, where the CPU has it, bf16.
        let mut students = Vec::new();
        for precision in [gemm::Precision::F32, gemm::Precision::Bf16] {
            if precision == gemm::Precision::Bf16 && !gemm_bf16::available() {
                eprintln!("bf16 skipped: no AVX512-BF16 on this CPU");
                continue;
            }
            let mut sharded = manifest.student.clone();
            sharded.batch_size = 150;
            sharded.clip_grad_norm = None;
            for mut student in [manifest.student.clone(), sharded] {
                student.precision = precision;
                students.push(student);
            }
        }
        for student in &students {
            let logits_with = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let (mut model, _) = train(student, &set, kd, 3, None).unwrap();
                    model.forward(x.view(), Mode::Eval)
                })
            };
            let one = logits_with(1);
            assert_eq!(one, logits_with(3), "{:?}", student.precision);
            assert_eq!(one, logits_with(2), "{:?}", student.precision);
        }
    }
}
