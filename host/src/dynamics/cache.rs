//! The dynamics cache: the records of a proxy, in a safetensors file (readable from Python
//! with `safetensors.numpy.load_file`) named by a content key of what they depend on: the
//! training set's content, the proxy spec (layers, optimiser, epochs, batch size, ...), the
//! runs and seed, the checkpoints and early steps. What is recorded is not in the key: a file
//! holding more than a request asks for serves it; one holding less is rebuilt with the union,
//! so two manifests asking for different quantities of the same proxy share one training.
//!
//! `kdprune prepare --shard i/n` writes one part per proxy run (`...run-<r>.safetensors`,
//! the runs `r` with `r mod n = i`); metadata `runs` says which runs a file holds.
//!
//! A file whose key or checksum (SHA-256 of every tensor's name, shape and bytes, in the
//! metadata) does not match is ignored with a warning and rebuilt; a write that fails is a
//! warning, and the run goes on with the records in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kdprune_plugin_api::DType;
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

use super::{tensor_name, Dynamics, DynamicsSpec, Quantity, Request, Source, PROXY_EMBEDDING};
use crate::tensor::{Elements, HostTensor};

/// Bumped when the meaning or layout of a record changes.
const FORMAT: &str = "kdprune-dynamics-1";

/// The cache key: hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicsKey(String);

impl DynamicsKey {
    /// `data_hash`: the content hash of the student-normalised training set.
    pub fn new(spec: &DynamicsSpec, data_hash: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(FORMAT);
        h.update(data_hash);
        // The proxy's settings as their serde form (explicit fields, not Debug text); a new
        // field of the student spec changes the key, which costs one retraining, never a
        // stale record. max_memory does not change what is recorded and is left out.
        let parts = serde_json::json!({
            "proxy": spec.proxy,
            "runs": spec.runs,
            "seed": spec.seed,
            "checkpoint_epochs": spec.checkpoint_epochs,
            "early_steps": spec.early_steps,
        });
        h.update(parts.to_string());
        Self(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("dynamics-{}.safetensors", &self.0[..32]))
    }

    /// The part holding proxy run `run` alone, written by `kdprune prepare --shard`; the
    /// first process that needs every run joins the parts into [`Self::path`] and removes them.
    pub fn run_path(&self, dir: &Path, run: usize) -> PathBuf {
        dir.join(format!("dynamics-{}.run-{run}.safetensors", &self.0[..32]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn checksum(tensors: &[(String, HostTensor)]) -> String {
    let mut h = Sha256::new();
    for (name, t) in tensors {
        h.update(name.as_bytes());
        for d in t.shape() {
            h.update(d.to_le_bytes());
        }
        h.update(t.elements().bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn request_names(request: &Request) -> Vec<String> {
    let mut names: Vec<String> = request
        .recorded
        .iter()
        .map(|&(s, q)| tensor_name(s, q))
        .collect();
    if request.embedding {
        names.push(PROXY_EMBEDDING.to_string());
    }
    if request.grad {
        names.push(super::PROXY_GRAD.to_string());
    }
    names
}

fn parse_request(names: &str) -> Option<Request> {
    let mut request = Request::default();
    for name in names.split(',').filter(|n| !n.is_empty()) {
        if name == PROXY_EMBEDDING {
            request.embedding = true;
            continue;
        }
        if name == super::PROXY_GRAD {
            request.grad = true;
            continue;
        }
        let rest = name.strip_prefix("dynamics/")?;
        let (source, quantity) = rest.split_once('/')?;
        let source = [Source::Batch, Source::Pass]
            .into_iter()
            .find(|s| s.as_str() == source)?;
        let quantity = Quantity::ALL.into_iter().find(|q| q.as_str() == quantity)?;
        request.recorded.insert((source, quantity));
    }
    Some(request)
}

fn to_safetensors_dtype(dtype: DType) -> Dtype {
    match dtype {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::U8 => Dtype::U8,
        _ => Dtype::U32,
    }
}

fn from_safetensors_dtype(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::U8 => DType::U8,
        Dtype::U32 => DType::U32,
        _ => return None,
    })
}

/// The cached records at `path`, or `None` when absent, for another key, or damaged (a
/// warning says which).
pub fn read(path: &Path, key: &DynamicsKey) -> Option<Dynamics> {
    let bytes = std::fs::read(path).ok()?;
    let warn = |why: &str| {
        tracing::warn!(cache = %path.display(), "ignoring the dynamics cache file ({why}); recording again");
    };
    let (_, meta) = match safetensors::SafeTensors::read_metadata(&bytes) {
        Ok(m) => m,
        Err(e) => {
            warn(&format!("not a safetensors file: {e}"));
            return None;
        }
    };
    let info: HashMap<String, String> = meta.metadata().clone().unwrap_or_default();
    if info.get("format").map(String::as_str) != Some(FORMAT)
        || info.get("key").map(String::as_str) != Some(key.as_str())
    {
        warn("written for another proxy or format");
        return None;
    }
    let Some(request) = info.get("recorded").and_then(|r| parse_request(r)) else {
        warn("its list of records is unreadable");
        return None;
    };
    let runs: Option<Vec<usize>> = match info.get("runs") {
        Some(list) => list
            .split(',')
            .map(|r| r.parse().ok())
            .collect::<Option<Vec<usize>>>(),
        // Files written before parts existed hold every run: the first axis says how many.
        None => None,
    };
    if info.contains_key("runs") && runs.is_none() {
        warn("its list of runs is unreadable");
        return None;
    }
    let file = match safetensors::SafeTensors::deserialize(&bytes) {
        Ok(f) => f,
        Err(e) => {
            warn(&format!("unreadable: {e}"));
            return None;
        }
    };
    let mut names: Vec<String> = file.names().into_iter().map(|n| n.to_string()).collect();
    names.sort();
    let mut tensors = Vec::new();
    for name in names {
        let view = file.tensor(&name).ok()?;
        let dtype = from_safetensors_dtype(view.dtype())?;
        let elements = Elements::from_bytes(dtype, view.data())?;
        let shape = view.shape().iter().map(|&d| d as u64).collect();
        let Some(t) = HostTensor::new(shape, elements) else {
            warn("a tensor's shape does not match its data");
            return None;
        };
        tensors.push((name, t));
    }
    if info.get("checksum") != Some(&checksum(&tensors)) {
        warn("checksum mismatch: the file was changed or damaged");
        return None;
    }
    let runs = runs.unwrap_or_else(|| {
        let first = request.recorded.iter().next().and_then(|&(s, q)| {
            let name = tensor_name(s, q);
            tensors.iter().find(|(n, _)| *n == name)
        });
        match first {
            Some((_, t)) => (0..t.shape()[0] as usize).collect(),
            None => vec![0],
        }
    });
    let runs_axis_agrees = request.recorded.iter().all(|&(s, q)| {
        let name = tensor_name(s, q);
        tensors
            .iter()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, t)| t.shape().first() == Some(&(runs.len() as u64)))
    });
    if !runs_axis_agrees {
        warn("its records do not hold the runs it lists");
        return None;
    }
    Some(Dynamics {
        tensors,
        request,
        runs,
        train_seconds: 0.0,
        pass_seconds: 0.0,
    })
}

/// Writes `dynamics` atomically (a temporary file of this process renamed into place).
pub fn write(path: &Path, key: &DynamicsKey, dynamics: &Dynamics) -> Result<(), String> {
    let mut tensors = dynamics.tensors.clone();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let views = tensors
        .iter()
        .map(|(name, t)| {
            let shape = t.shape().iter().map(|&d| d as usize).collect();
            TensorView::new(
                to_safetensors_dtype(t.elements().dtype()),
                shape,
                t.elements().bytes(),
            )
            .map(|v| (name.clone(), v))
            .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("key".to_string(), key.as_str().to_string()),
        (
            "recorded".to_string(),
            request_names(&dynamics.request).join(","),
        ),
        ("checksum".to_string(), checksum(&tensors)),
        (
            "runs".to_string(),
            dynamics
                .runs
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the folder: {e}"))?;
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write: {e}")
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot rename into place: {e}")
    })
}
