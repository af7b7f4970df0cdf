//! kdprune pruning method `external`: runs a user's command — a method written in Python and
//! NumPy, or anything else — as a pruning method. For each call it writes into a fresh folder:
//! - `features.npy` f32 `[N, ...]` and `labels.npy` int64 `[N]` (the student's view),
//! - one `.npy` per input the manifest's `inputs` names (`/` written as `__`, values as f32;
//!   `dynamics/batch/loss` → `dynamics__batch__loss.npy` `[R, E, N]`),
//! - `request.json`: `budget`, `seed`, `num_classes`, and the file of each input,
//!
//! then runs `command` with the folder as its last argument (also `KDPRUNE_FOLDER`), and reads
//! back `scores.npy` (float `[N]`) or `indices.npy` (integers `[K]`). The folder is removed
//! after an answer and kept (and named) after a failure. The command's failure (with the last line of its stderr),
//! the time limit, and a missing or malformed answer are each one error line naming the
//! command. Scores are oriented high = hard: a method whose low score means hard writes the
//! negated scores.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kdprune_plugin_api::{
    export_plugins, required, InputSpec, ParamValue, Params, PluginError, PluginInfo, ScoreRequest,
    Scorer, Selection,
};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

/// Every input a host of this plugin-api supplies.
const INPUTS: &[&str] = kdprune_plugin_api::INPUT_NAMES;

fn fail(message: impl Into<String>) -> PluginError {
    PluginError::new(message)
}

fn write_npy<A: WriteNpyExt>(path: &Path, array: &A) -> Result<(), PluginError> {
    let file = std::fs::File::create(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    array
        .write_npy(std::io::BufWriter::new(file))
        .map_err(|e| fail(format!("{}: {e}", path.display())))
}

/// The answer file as f64 values, from any float or integer dtype.
fn read_answer(path: &Path) -> Result<Vec<f64>, String> {
    let open = || std::fs::File::open(path).map_err(|e| e.to_string());
    macro_rules! try_types {
        ($($t:ty),*) => {$(
            if let Ok(a) = ArrayD::<$t>::read_npy(open()?) {
                if a.ndim() != 1 {
                    return Err(format!("has shape {:?}, expected one dimension", a.shape()));
                }
                return Ok(a.iter().map(|&v| v as f64).collect());
            }
        )*};
    }
    try_types!(f32, f64, i64, i32, u32, u64, i16, u16, u8, i8);
    Err("is not a 1-D .npy array of numbers".into())
}

pub struct External;

impl Scorer for External {
    fn info() -> PluginInfo {
        let mut info = PluginInfo::pruning_method(
            "external",
            env!("CARGO_PKG_VERSION"),
            "a user's command (e.g. a NumPy script) reads the inputs as .npy and writes scores.npy or indices.npy",
        )
        .param(
            "command",
            ParamValue::TextList(Default::default()),
            "the program and its arguments, e.g. [\"python3\", \"my_method.py\"]; the input folder is added last",
        )
        .param(
            "inputs",
            ParamValue::TextList(Default::default()),
            "inputs to write for it, by name (see docs/writing-a-plugin.md), e.g. [\"dynamics/batch/loss\"]",
        )
        .param("timeout_s", ParamValue::Float(3600.0), "seconds the command may run")
        .param(
            kdprune_plugin_api::BUDGET_INDEPENDENT_PARAM,
            ParamValue::Bool(false),
            "true: the command's scores do not depend on the budget; it runs once per seed and every keep is selected from its scores.npy (it must then write scores, not indices)",
        )
        .score_meaning("whatever the command computes; high = hard (negate scores whose low is hard)");
        for name in INPUTS {
            info = info.optional_input(name);
        }
        info
    }

    fn inputs_for(params: &Params<'_>) -> Option<Result<Vec<InputSpec>, PluginError>> {
        // Checked with the inputs, so a missing command is refused before any work.
        match params.get("command") {
            Some(ParamValue::TextList(c)) if !c.is_empty() => {}
            _ => {
                return Some(Err(fail(
                    "params command is empty; give the program and its arguments, e.g. [\"python3\", \"method.py\"]",
                )))
            }
        }
        let names = match params.get("inputs") {
            Some(ParamValue::TextList(names)) => names,
            _ => return Some(Ok(Vec::new())),
        };
        Some(
            names
                .iter()
                .map(|n| {
                    if INPUTS.contains(&n.as_str()) {
                        Ok(required(n.as_str()))
                    } else {
                        Err(fail(format!(
                            "inputs names {:?}, which is not an input (known: {})",
                            n.as_str(),
                            INPUTS.join(", ")
                        )))
                    }
                })
                .collect::<Result<Vec<_>, _>>(),
        )
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let command: Vec<String> = match request.param("command") {
            Some(ParamValue::TextList(c)) if !c.is_empty() => c.iter().map(|s| s.to_string()).collect(),
            _ => return Err(fail("params command is empty; give the program and its arguments, e.g. [\"python3\", \"method.py\"]")),
        };
        let timeout = Duration::from_secs_f64(request.float("timeout_s")?.max(0.0));
        // One folder per call: a folder kept after a failure is never reused.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let folder = std::env::temp_dir().join(format!(
            "kdprune-external-{}-{}-{call}",
            std::process::id(),
            request.seed
        ));
        // An earlier process of the same pid may have left one.
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).map_err(|e| fail(format!("{}: {e}", folder.display())))?;
        // Removed after an answer; kept after a failure, so the command can be run again by
        // hand on the same input.
        match run_in(&folder, &command, timeout, request) {
            Ok(selection) => {
                let _ = std::fs::remove_dir_all(&folder);
                Ok(selection)
            }
            Err(e) => Err(fail(format!(
                "{e}; its input folder is kept: {}",
                folder.display()
            ))),
        }
    }
}

fn run_in(
    folder: &Path,
    command: &[String],
    timeout: Duration,
    request: &ScoreRequest<'_>,
) -> Result<Selection, PluginError> {
    let train = request.train;
    let n = train.len();
    let shape: Vec<usize> = train.shape.iter().map(|&d| d as usize).collect();
    let features = ArrayD::from_shape_vec(IxDyn(&shape), train.features.to_vec())
        .map_err(|e| fail(format!("features: {e}")))?;
    write_npy(&folder.join("features.npy"), &features)?;
    let labels = ndarray::Array1::from(train.labels.iter().map(|&y| y as i64).collect::<Vec<_>>());
    write_npy(&folder.join("labels.npy"), &labels)?;
    let mut files = Vec::new();
    for tensor in request.inputs.iter() {
        let file = format!("{}.npy", tensor.name.as_str().replace('/', "__"));
        let shape: Vec<usize> = tensor.shape().iter().map(|&d| d as usize).collect();
        let values = ArrayD::from_shape_vec(IxDyn(&shape), tensor.to_f32()?)
            .map_err(|e| fail(format!("{}: {e}", tensor.name)))?;
        write_npy(&folder.join(&file), &values)?;
        files.push(format!("\"{}\": \"{file}\"", tensor.name));
    }
    let request_json = format!(
        "{{\"budget\": {}, \"seed\": {}, \"num_classes\": {}, \"n\": {n}, \"inputs\": {{{}}}}}\n",
        request.budget,
        request.seed,
        train.num_classes,
        files.join(", ")
    );
    std::fs::write(folder.join("request.json"), request_json).map_err(|e| fail(e.to_string()))?;

    let shown = command.join(" ");
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .arg(folder)
        .env("KDPRUNE_FOLDER", folder)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "command {shown:?} cannot start: {e}; check params command"
            ))
        })?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| fail(e.to_string()))? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "command {shown:?} ran past timeout_s = {} s and was stopped",
                timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    if !status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        return Err(fail(format!("command {shown:?} failed ({status}): {last}")));
    }
    let (scores, indices) = (folder.join("scores.npy"), folder.join("indices.npy"));
    let answer = |path: &PathBuf| {
        read_answer(path).map_err(|m| {
            fail(format!(
                "command {shown:?}: {} {m}",
                path.file_name().and_then(|f| f.to_str()).unwrap_or("")
            ))
        })
    };
    if scores.exists() {
        let values = answer(&scores)?;
        if values.len() != n {
            return Err(fail(format!(
                "command {shown:?}: scores.npy holds {} scores for {n} examples",
                values.len()
            )));
        }
        Ok(Selection::scores(
            values.into_iter().map(|v| v as f32).collect(),
        ))
    } else if indices.exists() {
        let values = answer(&indices)?;
        let mut kept = Vec::with_capacity(values.len());
        for v in values {
            if v < 0.0 || v.fract() != 0.0 || v >= n as f64 {
                return Err(fail(format!(
                    "command {shown:?}: indices.npy holds {v}, not an index below {n}"
                )));
            }
            kept.push(v as u32);
        }
        Ok(Selection::subset(kept))
    } else {
        Err(fail(format!(
            "command {shown:?} wrote neither scores.npy nor indices.npy in the folder it was given"
        )))
    }
}

export_plugins! {
    scorers: [External],
    teachers: [],
}
