//! A teacher that is an ONNX model, run by ONNX Runtime through `ort`.
//!
//! Owns opening the model, picking its input and output, checking them against the data
//! before any inference, the execution provider (CPU, CUDA with optional fallback), and
//! running batches (padding the last batch for models with a fixed batch dimension).
//!
//! A model with a fixed batch dimension labelling a whole data set on the CPU runs on
//! `threads` sessions of one thread each, at once, rather than one session whose operators
//! split a tiny batch across threads: the MNIST zoo model's images of one batch are
//! independent runs, and one thread per run leaves no operator waiting on another
//! (docs/performance.md measures it against Python's onnxruntime).

use std::path::{Path, PathBuf};

use ort::logging::LogLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::error::TeacherError;
use super::runtime;
use super::spec::{Layout, Provider};

/// A session and the options of its runs.
struct Lane {
    session: Session,
    /// Asks ONNX Runtime for the chosen output only (a classifier exported with a label output
    /// too would otherwise compute and copy it every batch). One per session: run options
    /// may not be shared between threads.
    run_options: RunOptions<HasSelectedOutputs>,
    /// The output it returns.
    output: String,
    /// What the output is, in messages: the teacher's `output`, or its `[teacher] embedding`.
    role: &'static str,
}

impl Lane {
    fn new(
        session: Session,
        output: &str,
        role: &'static str,
        model: &Path,
    ) -> Result<Self, TeacherError> {
        let run_options = RunOptions::new()
            .map_err(|e| TeacherError::Model {
                model: model.to_path_buf(),
                message: format!("cannot make run options: {e}"),
            })?
            .with_outputs(OutputSelector::no_default().with(output));
        Ok(Self {
            session,
            run_options,
            output: output.to_string(),
            role,
        })
    }
}

/// Largest model file opened once per thread (see the module doc): each session holds its
/// own copy of the weights.
const MAX_LANE_MODEL_BYTES: u64 = 256 << 20;

/// An opened ONNX teacher.
pub struct OnnxTeacher {
    /// The session every run uses, then (fixed-batch models in a bulk pass on the CPU) one
    /// more per thread, the runs of a batch split between them in order.
    lanes: Vec<Lane>,
    model: PathBuf,
    input: String,
    /// `Some(b)` when the model's batch dimension is fixed at `b`.
    fixed_batch: Option<usize>,
    /// Shape of one example as the model wants it (`[D]` or `[C, H, W]`).
    example_shape: Vec<usize>,
    num_classes: usize,
    /// The provider the session was made with.
    pub provider: Provider,
}

/// What the teacher is asked to work on.
#[derive(Clone, Copy)]
pub struct OnnxOptions<'a> {
    pub model: &'a Path,
    pub input: Option<&'a str>,
    pub output: Option<&'a str>,
    pub provider: Provider,
    pub allow_cpu_fallback: bool,
    pub ort_library: Option<&'a Path>,
    pub threads: usize,
    /// Let idle workers spin between runs (see [`crate::teacher::Teacher::set_bulk`]).
    pub spin: bool,
    pub layout: Layout,
    /// The data's example shape, `[D]` or `[C, H, W]`.
    pub sample_shape: &'a [usize],
    pub num_classes: usize,
}

fn shape_of(value: &ValueType) -> Option<Vec<i64>> {
    value.tensor_shape().map(|s| s.iter().copied().collect())
}

fn describe(outlets: &[ort::value::Outlet]) -> String {
    outlets
        .iter()
        .map(|o| format!("{} {:?}", o.name(), shape_of(o.dtype()).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pick<'s>(
    model: &Path,
    outlets: &'s [ort::value::Outlet],
    wanted: Option<&str>,
    what: &str,
) -> Result<&'s ort::value::Outlet, TeacherError> {
    match wanted {
        Some(name) => {
            outlets
                .iter()
                .find(|o| o.name() == name)
                .ok_or_else(|| TeacherError::Model {
                    model: model.to_path_buf(),
                    message: format!(
                        "has no {what} named {name:?}; its {what}s are: {}; fix [teacher] {what}",
                        describe(outlets)
                    ),
                })
        }
        None if outlets.len() == 1 => Ok(&outlets[0]),
        None => Err(TeacherError::Model {
            model: model.to_path_buf(),
            message: format!(
                "has {} {what}s ({}); name one with [teacher] {what} = \"...\"",
                outlets.len(),
                describe(outlets)
            ),
        }),
    }
}

fn open_session(options: &OnnxOptions<'_>) -> Result<(Session, Provider), TeacherError> {
    open_session_from(options, None)
}

/// Opens a session of `options.model`, or of `edited` (the model's bytes, changed) when given.
fn open_session_from(
    options: &OnnxOptions<'_>,
    edited: Option<&[u8]>,
) -> Result<(Session, Provider), TeacherError> {
    let env = runtime::environment(options.ort_library)?;
    let model_err = |message: String| TeacherError::Model {
        model: options.model.to_path_buf(),
        message,
    };
    let make = |provider: Provider| -> Result<Session, String> {
        // ONNX Runtime's idle workers spin for a while after each run. In online distillation
        // that spinning took the cores from the student's products (a 10 s step slowed to
        // 16 s with 3 s of teacher work), so they sleep there; in a pass over a data set
        // nothing else runs and waking sleeping workers for every batch cost the pass its
        // lead over Python's onnxruntime (docs/performance.md), so they spin.
        // Errors only from ONNX Runtime's own log: a warning it repeats on every run (a
        // declared output batch that differs from the actual one, say) flooded the log with
        // hundreds of lines; kdprune checks shapes itself and says what matters once.
        let mut builder = Session::builder(env)
            .map_err(|e| e.to_string())?
            .with_config_entry(
                "session.intra_op.allow_spinning",
                if options.spin { "1" } else { "0" },
            )
            .map_err(|e| e.to_string())?
            .with_log_level(LogLevel::Error)
            .map_err(|e| e.to_string())?;
        if options.threads > 0 {
            builder = builder
                .with_intra_threads(options.threads)
                .map_err(|e| e.to_string())?;
        }
        if provider == Provider::Cuda {
            builder = cuda_provider(builder)?;
        }
        match edited {
            Some(bytes) => builder.commit_from_memory(bytes),
            None => builder.commit_from_file(options.model),
        }
        .map_err(|e| e.to_string())
    };
    if !options.model.is_file() {
        return Err(model_err(
            "does not exist; fix [teacher] onnx (paths are relative to the manifest)".into(),
        ));
    }
    match make(options.provider) {
        Ok(session) => Ok((session, options.provider)),
        Err(reason) if options.provider == Provider::Cuda && options.allow_cpu_fallback => {
            tracing::warn!(%reason, "CUDA execution provider unavailable; falling back to CPU as the manifest allows");
            make(Provider::Cpu)
                .map(|s| (s, Provider::Cpu))
                .map_err(model_err)
        }
        Err(reason) if options.provider == Provider::Cuda => Err(TeacherError::Runtime(format!(
            "{}: the CUDA execution provider cannot be used: {reason}; install onnxruntime-gpu with its CUDA libraries, or set [teacher] provider = \"cpu\" or allow_cpu_fallback = true",
            options.model.display()
        ))),
        Err(reason) => Err(model_err(format!("cannot be opened by ONNX Runtime: {reason}"))),
    }
}

#[cfg(feature = "cuda")]
fn cuda_provider(
    builder: ort::session::builder::SessionBuilder,
) -> Result<ort::session::builder::SessionBuilder, String> {
    builder
        .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn cuda_provider(
    _builder: ort::session::builder::SessionBuilder,
) -> Result<ort::session::builder::SessionBuilder, String> {
    Err("this kdprune was built without CUDA support (rebuild with `cargo build --release --features cuda`)".into())
}

impl OnnxTeacher {
    /// Opens the model and checks its input and output against the data.
    pub fn open(options: &OnnxOptions<'_>) -> Result<Self, TeacherError> {
        let (session, provider) = open_session(options)?;
        let model = options.model.to_path_buf();
        let err = |message: String| TeacherError::Model {
            model: model.clone(),
            message,
        };
        let input = pick(&model, session.inputs(), options.input, "input")?;
        let output = pick(&model, session.outputs(), options.output, "output")?;
        for (outlet, what) in [(input, "input"), (output, "output")] {
            if outlet.dtype().tensor_type() != Some(TensorElementType::Float32) {
                let element = outlet
                    .dtype()
                    .tensor_type()
                    .map(|t| format!("a tensor of {t}"))
                    .unwrap_or_else(|| "not a tensor (a map or sequence)".into());
                return Err(err(format!(
                    "{what} {:?} is {element}, not a float32 tensor; name a float32 {what} in [teacher] {what}",
                    outlet.name(),
                )));
            }
        }
        let in_shape = shape_of(input.dtype()).unwrap_or_default();
        let out_shape = shape_of(output.dtype()).unwrap_or_default();

        let example_shape: Vec<usize> = match options.layout {
            Layout::Flat => vec![options.sample_shape.iter().product()],
            Layout::Nchw => {
                if options.sample_shape.len() != 3 {
                    return Err(err(format!(
                        "layout \"nchw\" needs image examples [C, H, W], but the data's examples have shape {:?}; set [data] sample_shape",
                        options.sample_shape
                    )));
                }
                options.sample_shape.to_vec()
            }
        };
        if in_shape.len() != example_shape.len() + 1 {
            return Err(err(format!(
                "input {:?} has shape {in_shape:?} but the data gives [batch, {}] with layout {:?}; set [teacher.preprocess] layout (flat or nchw) and [data] sample_shape to match",
                input.name(),
                example_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                options.layout
            )));
        }
        for (model_dim, &data_dim) in in_shape[1..].iter().zip(&example_shape) {
            if *model_dim > 0 && *model_dim as usize != data_dim {
                return Err(err(format!(
                    "input {:?} wants examples of shape {:?} but the data's are {example_shape:?}; this model does not fit this data set",
                    input.name(),
                    &in_shape[1..]
                )));
            }
        }
        if out_shape.len() != 2 {
            return Err(err(format!(
                "output {:?} has shape {out_shape:?}; a classifier's output is [batch, classes]",
                output.name()
            )));
        }
        if out_shape[1] > 0 && out_shape[1] as usize != options.num_classes {
            return Err(err(format!(
                "output {:?} has {} classes but the data has {}; use a teacher trained on this data set",
                output.name(),
                out_shape[1],
                options.num_classes
            )));
        }
        let fixed_batch = (in_shape[0] > 0).then_some(in_shape[0] as usize);
        let output_name = output.name().to_string();
        let lane = |session: Session| Lane::new(session, &output_name, "output", &model);
        let input = input.name().to_string();
        let threads = lane_count(options, fixed_batch, provider);
        let lanes = if threads > 1 {
            drop(session);
            let single = OnnxOptions {
                threads: 1,
                ..*options
            };
            (0..threads)
                .map(|_| lane(open_session(&single)?.0))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![lane(session)?]
        };
        Ok(Self {
            lanes,
            input,
            model,
            fixed_batch,
            example_shape,
            num_classes: options.num_classes,
            provider,
        })
    }

    /// Sessions that run at once (see the module doc).
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The batch size the model accepts when it is fixed.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.fixed_batch
    }

    /// Runs the model on `features` `[B, D]` (already preprocessed), returning the raw output
    /// `[B, num_classes]`. A fixed-batch model is run in chunks of its size, padding the
    /// last one with zeros; with several lanes, consecutive chunks go to each at once.
    pub fn run(&mut self, features: &[f32], batch: usize) -> Result<Vec<f32>, TeacherError> {
        let d: usize = self.example_shape.iter().product();
        if features.len() != batch * d {
            return Err(TeacherError::Model {
                model: self.model.clone(),
                message: format!(
                    "internal: batch of {} values for {batch} examples of {d}",
                    features.len()
                ),
            });
        }
        let plan = RunPlan::new(
            &self.model,
            &self.input,
            self.fixed_batch,
            &self.example_shape,
            features,
            batch,
        );
        let classes = self.num_classes;
        let chunks = batch.div_ceil(plan.chunk);
        let lanes = self.lanes.len().min(chunks).max(1);
        if lanes == 1 {
            return self.lanes[0].scores(&plan, 0..chunks, classes);
        }
        let parts: Vec<Result<Vec<f32>, TeacherError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self.lanes[..lanes]
                .iter_mut()
                .enumerate()
                .map(|(i, lane)| {
                    let share = chunks * i / lanes..chunks * (i + 1) / lanes;
                    let plan = &plan;
                    scope.spawn(move || lane.scores(plan, share, classes))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(batch * self.num_classes);
        for part in parts {
            out.extend_from_slice(&part?);
        }
        Ok(out)
    }

    /// Opens a second session of the model in which `tensor` (a graph output, or any tensor a
    /// node produces) is an output, for embeddings.
    pub fn open_embedder(
        &self,
        options: &OnnxOptions<'_>,
        tensor: &str,
    ) -> Result<OnnxEmbedder, TeacherError> {
        let bytes = std::fs::read(options.model)
            .map_err(|e| self.model_error(format!("cannot read: {e}")))?;
        let edited = super::onnx_graph::with_output(&bytes, tensor)
            .map_err(|m| self.model_error(format!("[teacher] embedding: {m}")))?;
        let (session, _) = open_session_from(options, Some(&edited))?;
        Ok(OnnxEmbedder {
            lane: Lane::new(session, tensor, "[teacher] embedding", &self.model)?,
            model: self.model.clone(),
            input: self.input.clone(),
            fixed_batch: self.fixed_batch,
            example_shape: self.example_shape.clone(),
        })
    }

    fn model_error(&self, message: String) -> TeacherError {
        TeacherError::Model {
            model: self.model.clone(),
            message,
        }
    }
}

/// How many single-thread sessions a teacher runs at once (1: one session with `threads`
/// intra-op threads): the thread count, for a fixed-batch model labelling whole sets
/// (`spin`) on the CPU whose file is at most [`MAX_LANE_MODEL_BYTES`].
fn lane_count(options: &OnnxOptions<'_>, fixed_batch: Option<usize>, provider: Provider) -> usize {
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let small = std::fs::metadata(options.model).is_ok_and(|m| m.len() <= MAX_LANE_MODEL_BYTES);
    if fixed_batch.is_some() && options.spin && provider == Provider::Cpu && small {
        threads
    } else {
        1
    }
}

/// One call of [`OnnxTeacher::run`] or [`OnnxEmbedder::run`]: the batch and what each of its
/// runs needs.
struct RunPlan<'a> {
    model: &'a Path,
    input: &'a str,
    /// Rows per run (the fixed batch, or the whole batch).
    chunk: usize,
    fixed: bool,
    example_shape: &'a [usize],
    /// `[batch, D]`.
    features: &'a [f32],
    batch: usize,
}

impl<'a> RunPlan<'a> {
    /// Runs of the model's fixed batch if it has one, else one run of the whole batch.
    fn new(
        model: &'a Path,
        input: &'a str,
        fixed_batch: Option<usize>,
        example_shape: &'a [usize],
        features: &'a [f32],
        batch: usize,
    ) -> Self {
        Self {
            model,
            input,
            chunk: fixed_batch.unwrap_or(batch.max(1)),
            fixed: fixed_batch.is_some(),
            example_shape,
            features,
            batch,
        }
    }
}

impl Lane {
    /// Runs the chunks `chunks` (indices of chunks of `plan.chunk` rows) of the plan's batch in
    /// order, a fixed-batch model's last one padded with zero rows, and hands each run's output
    /// (its shape and values) with the rows it ran and the rows of the batch among them to
    /// `take`, whose error message is about this model.
    fn each_run(
        &mut self,
        plan: &RunPlan<'_>,
        chunks: std::ops::Range<usize>,
        mut take: impl FnMut(&[i64], &[f32], usize, usize) -> Result<(), String>,
    ) -> Result<(), TeacherError> {
        let model_error = |message: String| TeacherError::Model {
            model: plan.model.to_path_buf(),
            message,
        };
        let d: usize = plan.example_shape.iter().product();
        let mut padded = Vec::new();
        for start in chunks.map(|c| c * plan.chunk) {
            let rows = plan.chunk.min(plan.batch - start);
            let data = chunk_input(
                plan.features,
                start..start + rows,
                plan.chunk,
                d,
                plan.fixed,
                &mut padded,
            );
            let run_rows = data.len() / d;
            let shape = input_shape(run_rows, plan.example_shape);
            let tensor = TensorRef::from_array_view((shape, data))
                .map_err(|e| model_error(format!("cannot make the input tensor: {e}")))?;
            let outputs = self
                .session
                .run_with_options(ort::inputs![plan.input => tensor], &self.run_options)
                .map_err(|e| model_error(format!("inference failed: {e}")))?;
            let (out_shape, values) = outputs[self.output.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(|e| {
                    model_error(format!(
                        "{} {:?} is not a float32 tensor: {e}",
                        self.role, self.output
                    ))
                })?;
            take(out_shape, values, run_rows, rows).map_err(model_error)?;
        }
        Ok(())
    }

    /// The raw outputs `[rows, classes]` of the runs `chunks` of the plan's batch, in order.
    fn scores(
        &mut self,
        plan: &RunPlan<'_>,
        chunks: std::ops::Range<usize>,
        classes: usize,
    ) -> Result<Vec<f32>, TeacherError> {
        let mut out = Vec::with_capacity(chunks.len() * plan.chunk * classes);
        let output = self.output.clone();
        self.each_run(plan, chunks, |shape, values, run_rows, rows| {
            if shape.len() != 2 || shape[0] as usize != run_rows || shape[1] as usize != classes {
                return Err(format!(
                    "output {output:?} has shape {shape:?} for a batch of {run_rows}; expected [{run_rows}, {classes}] (classes of the data)"
                ));
            }
            out.extend_from_slice(&values[..rows * classes]);
            Ok(())
        })?;
        Ok(out)
    }
}

/// The rows `rows` of `features` (`d` values each) as one run's input: as they are, or padded
/// with zero rows to `chunk` for a model whose batch is fixed.
fn chunk_input<'a>(
    features: &'a [f32],
    rows: std::ops::Range<usize>,
    chunk: usize,
    d: usize,
    fixed: bool,
    padded: &'a mut Vec<f32>,
) -> &'a [f32] {
    let slice = &features[rows.start * d..rows.end * d];
    if fixed && rows.len() < chunk {
        padded.clear();
        padded.extend_from_slice(slice);
        padded.resize(chunk * d, 0.0);
        padded
    } else {
        slice
    }
}

/// `[rows, ...example_shape]` as ONNX Runtime takes it.
fn input_shape(rows: usize, example_shape: &[usize]) -> Vec<i64> {
    std::iter::once(rows as i64)
        .chain(example_shape.iter().map(|&s| s as i64))
        .collect()
}

/// A session of the teacher's model that returns one of its intermediate tensors.
pub struct OnnxEmbedder {
    /// The session of the edited model, returning the tensor.
    lane: Lane,
    model: PathBuf,
    input: String,
    fixed_batch: Option<usize>,
    example_shape: Vec<usize>,
}

impl OnnxEmbedder {
    /// The tensor for `features` `[B, D]` (preprocessed), flattened per example: `[B, H]`
    /// row-major, and `H`.
    pub fn run(
        &mut self,
        features: &[f32],
        batch: usize,
    ) -> Result<(Vec<f32>, usize), TeacherError> {
        let plan = RunPlan::new(
            &self.model,
            &self.input,
            self.fixed_batch,
            &self.example_shape,
            features,
            batch,
        );
        let mut out = Vec::new();
        let mut width = 0;
        let tensor = self.lane.output.clone();
        self.lane
            .each_run(&plan, 0..batch.div_ceil(plan.chunk), |shape, values, run_rows, rows| {
                if shape.is_empty() || shape[0] as usize != run_rows {
                    return Err(format!(
                        "[teacher] embedding {tensor:?} has shape {shape:?} for a batch of {run_rows}; name a tensor whose first dimension is the batch"
                    ));
                }
                width = values.len() / run_rows;
                out.extend_from_slice(&values[..rows * width]);
                Ok(())
            })?;
        Ok((out, width))
    }
}
