//! Throughput measurements on a manifest's data: teacher images per second (ONNX Runtime,
//! cache bypassed), student training samples per second (the trainer of [`crate::train`] on
//! the whole training set, with and without the distillation term), the achieved GFLOP/s,
//! this machine's f32 GEMM rate measured in the same process, and peak memory.

use std::time::Instant;

use ndarray::Array2;
use serde::Serialize;

use crate::data;
use crate::manifest::Manifest;
use crate::plugins::{self, Registry};
use crate::teacher::Teacher;
use crate::train::kd::Alpha;
use crate::train::{self, Kd, TrainSet};
use crate::Error;

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The CPU ([`cpu_description`]), so that every figure says what made it.
    pub cpu: String,
    /// The instruction set of the trainer's own kernels (`train::kernels::isa`): `avx512`, `avx2` or
    /// `portable`.
    pub kernels: &'static str,
    pub train_examples: usize,
    pub teacher: Option<String>,
    pub teacher_images_per_s: Option<f64>,
    pub student_layers: Vec<String>,
    pub student_parameters: usize,
    pub batch_size: usize,
    pub epochs: usize,
    /// Hard-label training rate of the fastest epoch (the machine's rate moves between
    /// seconds; the peers of `bench/peers.py` report their fastest pass too).
    pub student_samples_per_s_hard: f64,
    /// Hard-label training rate of each epoch, in order.
    pub student_samples_per_s_hard_epochs: Vec<f64>,
    /// KD training rate (α = 0.5) of the fastest epoch.
    pub student_samples_per_s_kd: Option<f64>,
    /// With `--alphas`: the KD step's cost at each α, against the label-only step, with
    /// subnormals flushed (as training runs) and kept (IEEE), timed alternately, the fastest
    /// epoch of three rounds over the α (forward, reverse, forward).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kd_by_alpha: Vec<AlphaCost>,
    /// Training FLOPs per sample: 3 × forward FLOPs (= 6 × parameters for an MLP).
    pub train_flops_per_sample: u64,
    /// Achieved training GFLOP/s at the hard-label rate.
    pub student_gflops: f64,
    /// Of which in convolutions.
    pub conv_gflops: f64,
    /// f32 GEMM rate of this machine: 1024³ products through the trainer's own product
    /// (`train::kernels::gemm`, both cores), best of 5 right before and 5 right after the timed
    /// hard-label training.
    pub gemm_peak_gflops: f64,
    pub fraction_of_gemm_peak: f64,
    /// With `--layers`: the label-only training's wall seconds per layer kind and pass
    /// (`train::profile`), largest first, and the seconds of the epochs they were taken in
    /// (the rest is the loss, the update and the batches' assembly).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layer_times: Vec<train::profile::KindTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiled_seconds: Option<f64>,
    /// Peak resident memory of the process (VmHWM), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Training features + labels + soft labels + model + optimiser state, bytes.
    pub accounted_bytes: u64,
}

/// GFLOP/s of `n × n × n` f32 matrix products, best of `reps` of each of kdprune's two ways:
/// its split over the cores (`train::kernels::gemm::gemm`, what training uses) and the `gemm` crate's
/// own threads (faster for large square products on some CPUs), both on a worker of rayon's
/// pool, operands row-major. The better is the machine's f32 GEMM rate that the benchmark
/// divides by.
pub fn gemm_gflops(n: usize, reps: usize) -> f64 {
    use crate::train::kernels::gemm;
    let a = Array2::<f32>::from_shape_fn((n, n), |(i, j)| ((i * 7 + j * 3) % 17) as f32 * 0.01);
    let b = a.t().as_standard_layout().into_owned();
    let mut c = Array2::<f32>::zeros((n, n));
    let mut best = f64::INFINITY;
    // From a worker of the pool, as training calls them: a call from outside sleeps until a
    // worker has done it.
    rayon::scope(|_| {
        for _ in 0..reps {
            let started = Instant::now();
            gemm::gemm(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
            best = best.min(started.elapsed().as_secs_f64());
            let started = Instant::now();
            gemm::gemm_crate_threaded(&a.view(), &b.view(), &mut c.view_mut());
            best = best.min(started.elapsed().as_secs_f64());
        }
    });
    2.0 * (n as f64).powi(3) / best / 1e9
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs the benchmark with `epochs` of student training per measurement; `with_teacher`
/// also times the teacher and the KD step.
/// What [`run`] measures.
#[derive(Debug, Clone, Copy)]
pub struct StudentBench {
    /// Epochs per measurement; the fastest gives the rate.
    pub epochs: usize,
    /// Time the teacher's pass and the KD step too.
    pub with_teacher: bool,
    /// Time the KD step at several α ([`BenchReport::kd_by_alpha`]).
    pub alphas: bool,
    /// Time each layer kind ([`BenchReport::layer_times`]).
    pub layers: bool,
    /// Train on the first `limit` training examples only.
    pub limit: Option<usize>,
}

pub fn run(
    manifest: &Manifest,
    extra_plugin_dirs: &[std::path::PathBuf],
    options: StudentBench,
) -> Result<BenchReport, Error> {
    let StudentBench {
        epochs,
        with_teacher,
        alphas,
        layers,
        limit,
    } = options;
    let registry = Registry::load(&plugins::plugin_dirs(
        &manifest.plugin_dirs,
        extra_plugin_dirs,
    ))?;
    let (mut raw_train, _) = data::load(&manifest.data, manifest.seeds[0])?;
    if let Some(limit) = limit.filter(|&l| l < raw_train.len()) {
        raw_train = raw_train.subset(&(0..limit as u32).collect::<Vec<_>>());
    }
    let norm = manifest.data.normalise.resolve(&raw_train);
    let features = norm.apply(raw_train.features.view());

    let (teacher_rate, teacher_logits) = match (manifest.teacher(), with_teacher) {
        (Some(spec), true) => {
            let mut teacher = warm_teacher(manifest, spec, &registry, &raw_train)?;
            let started = Instant::now();
            let (logits, _) = teacher.run(&raw_train, "bench")?;
            let rate = raw_train.len() as f64 / started.elapsed().as_secs_f64();
            (Some(rate), Some(logits))
        }
        _ => (None, None),
    };
    let mut student = manifest.student.clone();
    student.epochs = epochs;
    let n = raw_train.len();
    // Samples/s of each epoch.
    let time_training = |alpha: f32| -> Result<(Vec<f64>, train::Network), Error> {
        let set = TrainSet {
            x: features.view(),
            sample_shape: &raw_train.sample_shape,
            y: &raw_train.labels,
            teacher: teacher_logits.as_ref().map(|t| t.view()),
            num_classes: raw_train.num_classes,
        };
        let kd = Kd {
            alpha: Alpha::new(alpha).expect("constant in range"),
            temperature: manifest.distillation.temperature,
        };
        let (model, logs) = train::train(&student, &set, kd, 0, None)?;
        let rates = logs.iter().map(|log| n as f64 / log.seconds).collect();
        Ok((rates, model))
    };
    let fastest = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    // The machine's rate moves between seconds on a shared host: the GEMM rate is measured
    // right before and right after the timed training, and the higher one is the peak.
    let gemm_before = gemm_gflops(1024, 5);
    train::profile::set_enabled(layers);
    let (hard_epochs, mut model) = time_training(0.0)?;
    train::profile::set_enabled(false);
    let layer_times = if layers {
        train::profile::take()
    } else {
        Vec::new()
    };
    let profiled_seconds = layers.then(|| hard_epochs.iter().map(|rate| n as f64 / rate).sum());
    let gemm = gemm_before.max(gemm_gflops(1024, 5));
    let hard = fastest(&hard_epochs);
    let kd = match teacher_logits {
        Some(_) => Some(fastest(&time_training(0.5)?.0)),
        None => None,
    };
    let kd_by_alpha = if alphas && teacher_logits.is_some() {
        alpha_sweep(&|alpha| Ok(fastest(&time_training(alpha)?.0)))?
    } else {
        Vec::new()
    };
    let parameters = model.num_parameters();
    let (forward, conv_forward) = model.flops_per_example();
    let student_gflops = hard * 3.0 * forward as f64 / 1e9;
    // Optimiser state: one buffer per parameter for SGD with momentum, two for AdamW.
    let optimiser_buffers = match manifest.student.optimizer {
        train::optim::OptimizerSpec::Sgd { .. } => 1,
        train::optim::OptimizerSpec::AdamW { .. } => 2,
    };
    let accounted = (features.len() * 4
        + raw_train.features.len() * 4
        + n * 4
        + teacher_logits.as_ref().map_or(0, |t| t.len() * 4 * 2)
        + parameters * 4 * (2 + optimiser_buffers)) as u64;
    Ok(BenchReport {
        cpu: cpu_description(),
        kernels: train::kernels::isa::Isa::detect()
            .map_or("portable", train::kernels::isa::Isa::name),
        train_examples: n,
        teacher: manifest.teacher().map(|t| t.name.clone()),
        teacher_images_per_s: teacher_rate,
        student_layers: model.describe(),
        student_parameters: parameters,
        batch_size: manifest.student.batch_size,
        epochs,
        student_samples_per_s_hard: hard,
        student_samples_per_s_hard_epochs: hard_epochs,
        student_samples_per_s_kd: kd,
        kd_by_alpha,
        train_flops_per_sample: 3 * forward,
        student_gflops,
        conv_gflops: hard * 3.0 * conv_forward as f64 / 1e9,
        gemm_peak_gflops: gemm,
        fraction_of_gemm_peak: student_gflops / gemm,
        layer_times,
        profiled_seconds,
        peak_rss_bytes: peak_rss(),
        accounted_bytes: accounted,
    })
}

/// `kdprune bench --alphas`: the KD step at α = 0, 0.1, 0.5, 0.9 and 1, with subnormals flushed
/// and kept, `rate(α)` giving samples/s. Rounds over every α, in forward then reverse order,
/// each α's figure the fastest of all its rounds: a slow minute of a shared host then lands
/// on every α rather than deciding one ratio.
fn alpha_sweep(rate: &dyn Fn(f32) -> Result<f64, Error>) -> Result<Vec<AlphaCost>, Error> {
    let alphas_measured = [0.0f32, 0.1, 0.5, 0.9, 1.0];
    let mut rates: Vec<(f32, [f64; 2])> = alphas_measured.iter().map(|&a| (a, [0.0; 2])).collect();
    for round in 0..ALPHA_ROUNDS {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..rates.len()).collect()
        } else {
            (0..rates.len()).rev().collect()
        };
        for at in order {
            let alpha = rates[at].0;
            for (i, flush) in [true, false].into_iter().enumerate() {
                train::kernels::subnormal::set_flushing(flush);
                let measured = rate(alpha)?;
                rates[at].1[i] = rates[at].1[i].max(measured);
            }
            train::kernels::subnormal::set_flushing(true);
        }
    }
    let base = rates[0].1;
    Ok(rates
        .iter()
        .map(|&(alpha, [flushed, ieee])| AlphaCost {
            alpha,
            samples_per_s_flushed: flushed,
            samples_per_s_ieee: ieee,
            cost_vs_labels_only_flushed: base[0] / flushed,
            cost_vs_labels_only_ieee: base[1] / ieee,
        })
        .collect())
}

/// The manifest's teacher `spec` on `train`, bulk-labelling, after one warm-up batch (so
/// that session creation is not timed).
fn warm_teacher<'a>(
    manifest: &'a Manifest,
    spec: &'a crate::teacher::spec::TeacherSpec,
    registry: &'a Registry,
    train: &'a data::Dataset,
) -> Result<Teacher<'a>, Error> {
    let mut teacher = Teacher::new(spec, registry, train, &manifest.cache_dir, 0)?;
    teacher.set_bulk(true);
    let warm = train.subset(&(0..spec.batch_size.min(train.len()) as u32).collect::<Vec<_>>());
    teacher.run(&warm, "warm-up")?;
    Ok(teacher)
}

/// Rounds of the α sweep of `kdprune bench --alphas`.
const ALPHA_ROUNDS: usize = 3;

/// One α of `kdprune bench --alphas`: samples/s (fastest epoch) and the ratio to α = 0.
#[derive(Debug, Clone, Serialize)]
pub struct AlphaCost {
    pub alpha: f32,
    pub samples_per_s_flushed: f64,
    pub samples_per_s_ieee: f64,
    /// `time(α) / time(α = 0)`, subnormals flushed: at most 1.05 is the target.
    pub cost_vs_labels_only_flushed: f64,
    pub cost_vs_labels_only_ieee: f64,
}

/// Proxy training with the dynamics recorder against the same training without it.
#[derive(Debug, Clone, Serialize)]
pub struct DynamicsBench {
    /// CPU model and vector extensions (from `/proc/cpuinfo`).
    pub cpu: String,
    pub train_examples: usize,
    pub runs: usize,
    pub epochs: usize,
    pub checkpoint_epochs: Vec<usize>,
    pub early_steps: Vec<usize>,
    /// Every quantity of both sources and the embedding, as recorded.
    pub recorded: Vec<String>,
    /// Bytes per example per record of each tensor (batch: per epoch; pass: per checkpoint).
    pub bytes_per_example_per_record: Vec<(String, usize)>,
    /// Bytes of every record of all runs.
    pub record_bytes: u64,
    /// Wall seconds of each run's training without and with recording, interleaved.
    pub plain_seconds: Vec<f64>,
    pub recorded_seconds: Vec<f64>,
    /// Of which in the evaluation passes.
    pub pass_seconds: Vec<f64>,
    /// `Σ recorded / Σ plain − 1`.
    pub overhead: f64,
    pub peak_rss_bytes: Option<u64>,
}

/// The CPU's model name and its vector extensions of note.
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let notable: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| {
            [
                "avx2",
                "fma",
                "avx512f",
                "avx512_bf16",
                "amx_bf16",
                "amx_tile",
            ]
            .contains(f)
        })
        .collect();
    let build = if cfg!(feature = "x86-v4") || !flags.contains("avx512f") {
        ""
    } else {
        "; this build's AVX-512 kernels off (AVX2 path)"
    };
    format!(
        "{} ({} logical cores; {}{build})",
        field("model name"),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        notable.join(" ")
    )
}

/// Trains the manifest's proxy `[dynamics] runs` times without and with recording every
/// quantity (interleaved run by run) on the full training set.
pub fn dynamics(manifest: &Manifest) -> Result<DynamicsBench, Error> {
    use crate::dynamics::{self, Quantity, Request, Source};
    let (raw_train, raw_test) = data::load(&manifest.data, manifest.seeds[0])?;
    let (train_set, _, _) =
        crate::experiment::normalise(&manifest.data.normalise, &raw_train, &raw_test)?;
    let spec = &manifest.dynamics;
    let mut request = Request {
        embedding: true,
        ..Default::default()
    };
    for q in Quantity::ALL {
        for s in [Source::Batch, Source::Pass] {
            if q.available_from(s) {
                request.recorded.insert((s, q));
            }
        }
    }
    let set = TrainSet {
        x: train_set.features.view(),
        sample_shape: &train_set.sample_shape,
        y: &train_set.labels,
        teacher: None,
        num_classes: train_set.num_classes,
    };
    let kd = Kd {
        alpha: Alpha::new(0.0).expect("valid"),
        temperature: crate::train::kd::Temperature::new(1.0).expect("valid"),
    };
    let (mut plain, mut recorded, mut passes) = (Vec::new(), Vec::new(), Vec::new());
    let mut record_bytes = 0;
    for run in 0..spec.runs {
        let started = Instant::now();
        train::train(&spec.proxy, &set, kd, spec.seed + run as u64, None)?;
        plain.push(started.elapsed().as_secs_f64());
        let one = dynamics::DynamicsSpec {
            runs: 1,
            seed: spec.seed + run as u64,
            ..spec.clone()
        };
        let started = Instant::now();
        let d = dynamics::record(&one, &request, &set)?;
        recorded.push(started.elapsed().as_secs_f64());
        passes.push(d.pass_seconds);
        record_bytes += d
            .tensors
            .iter()
            .map(|(_, t)| t.nbytes() as u64)
            .sum::<u64>();
        tracing::info!(
            run,
            plain = plain[run],
            recorded = recorded[run],
            "dynamics bench run"
        );
    }
    let c = train_set.num_classes;
    let width = dynamics::embedding_width(spec, &train_set.sample_shape, c)?;
    let mut per_example: Vec<(String, usize)> = request
        .recorded
        .iter()
        .map(|&(s, q)| (dynamics::tensor_name(s, q), q.bytes(c)))
        .collect();
    per_example.push((dynamics::PROXY_EMBEDDING.to_string(), width * 4));
    Ok(DynamicsBench {
        cpu: cpu_description(),
        train_examples: train_set.len(),
        runs: spec.runs,
        epochs: spec.proxy.epochs,
        checkpoint_epochs: spec.checkpoint_epochs.clone(),
        early_steps: spec.early_steps.clone(),
        recorded: per_example.iter().map(|(n, _)| n.clone()).collect(),
        bytes_per_example_per_record: per_example,
        record_bytes,
        overhead: recorded.iter().sum::<f64>() / plain.iter().sum::<f64>() - 1.0,
        plain_seconds: plain,
        recorded_seconds: recorded,
        pass_seconds: passes,
        peak_rss_bytes: peak_rss(),
    })
}

/// `kdprune bench --teacher-only`: the soft-label pass over the training set, from the decoded
/// data in memory (preprocessing, inference, log-space conversion), as bench/teacher_peer.py
/// times Python's onnxruntime.
#[derive(Debug, Clone, Serialize)]
pub struct TeacherBench {
    pub teacher: String,
    pub batch_size: usize,
    pub threads: usize,
    pub images: usize,
    /// The fastest of the passes.
    pub pass_images_per_s: f64,
    pub passes_images_per_s: Vec<f64>,
}

/// Times `passes` soft-label passes of the manifest's first teacher (after one warm-up batch).
pub fn teacher_pass(
    manifest: &Manifest,
    extra_plugin_dirs: &[std::path::PathBuf],
    passes: usize,
) -> Result<TeacherBench, Error> {
    let registry = Registry::load(&plugins::plugin_dirs(
        &manifest.plugin_dirs,
        extra_plugin_dirs,
    ))?;
    let spec = manifest.teacher().ok_or_else(|| {
        Error::Data(data::DataError::Invalid(
            "bench --teacher-only needs a [teacher] in the manifest".into(),
        ))
    })?;
    let (raw_train, _) = data::load(&manifest.data, manifest.seeds[0])?;
    let mut teacher = warm_teacher(manifest, spec, &registry, &raw_train)?;
    let mut rates = Vec::with_capacity(passes);
    for _ in 0..passes.max(1) {
        let started = Instant::now();
        teacher.run(&raw_train, "bench")?;
        rates.push(raw_train.len() as f64 / started.elapsed().as_secs_f64());
    }
    let threads = match &spec.source {
        crate::teacher::spec::TeacherSource::Onnx { threads, .. } => *threads,
        _ => 0,
    };
    Ok(TeacherBench {
        teacher: spec.name.clone(),
        batch_size: spec.batch_size,
        threads,
        images: raw_train.len(),
        pass_images_per_s: rates.iter().copied().fold(0.0, f64::max),
        passes_images_per_s: rates,
    })
}
