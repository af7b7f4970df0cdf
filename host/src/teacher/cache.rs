//! The soft-label cache: a teacher's log-space scores for one data set, in a file named by
//! a content hash of the model (or plugin library and parameters), the data, and the
//! preprocessing. A changed model, data file or preprocessing gives a new key; an unreadable,
//! truncated or altered cache file (a SHA-256 of the values sits in the metadata) is ignored
//! and rebuilt. Scores and embeddings are safetensors files (`safetensors.safe_open` reads
//! them in Python).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use sha2::{Digest, Sha256};

use super::error::TeacherError;
use super::spec::{OutputKind, TeacherSource, TeacherSpec};
use crate::data::Dataset;
use crate::plugins::Registry;
use crate::tensor::{Elements, HostTensor};

/// The part of the key that does not depend on the data set.
pub(super) struct KeyBase(Sha256);

/// A cache key: hex of a SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CacheKey(String);

impl CacheKey {
    pub(super) fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("teacher-{}.safetensors", &self.0[..32]))
    }

    /// The file of shard `shard`'s rows (`kdprune prepare --shard i/n`).
    pub(super) fn part_path(&self, dir: &Path, shard: crate::shard::Shard) -> PathBuf {
        dir.join(format!(
            "teacher-{}.part-{}.safetensors",
            &self.0[..32],
            shard.tag()
        ))
    }

    /// The file of the embedding tensor `tensor` for this model and data.
    pub(super) fn embedding_path(&self, dir: &Path, tensor: &str) -> PathBuf {
        let mut h = Sha256::new();
        h.update(self.0.as_bytes());
        h.update(tensor.as_bytes());
        let key: String = h
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        dir.join(format!("teacher-embedding-{key}.safetensors"))
    }
}

/// A cached f32 tensor: its shape, its little-endian bytes, the file's metadata.
type Cached = (Vec<usize>, Vec<u8>, HashMap<String, String>);

/// The f32 tensor `name` of a cache file, or `None` when the file is absent, unreadable or
/// its values do not match the checksum in its metadata.
fn read_f32(path: &Path, name: &str) -> Option<Cached> {
    let bytes = std::fs::read(path).ok()?;
    let parsed = (|| {
        let file = safetensors::SafeTensors::deserialize(&bytes).ok()?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
        let view = file.tensor(name).ok()?;
        let meta = meta.metadata().clone()?;
        let ok = view.dtype() == safetensors::Dtype::F32
            && meta.get("sha256") == Some(&crate::hash::sha256_hex(view.data()));
        ok.then(|| (view.shape().to_vec(), view.data().to_vec(), meta))
    })();
    if parsed.is_none() {
        tracing::warn!(cache = %path.display(), "ignoring an unreadable or altered cache file; rebuilding it");
    }
    parsed
}

/// Writes the f32 tensor `name` with a checksum and `meta`, atomically (a temporary file of
/// this process renamed into place: two runs sharing a cache folder never write one file).
fn write_f32(
    path: &Path,
    name: &str,
    shape: Vec<usize>,
    bytes: &[u8],
    mut meta: HashMap<String, String>,
) -> Result<(), String> {
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, bytes)
        .map_err(|e| e.to_string())?;
    meta.insert("sha256".to_string(), crate::hash::sha256_hex(bytes));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the folder: {e}"))?;
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    safetensors::serialize_to_file([(name, view)], Some(meta), &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write: {e}")
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write: {e}")
    })
}

/// A cached embedding `[n, H]`, or `None` when absent or unusable.
pub(super) fn read_embedding(path: &Path, n: usize) -> Option<HostTensor> {
    let (shape, bytes, _) = read_f32(path, "embedding")?;
    if shape.len() != 2 || shape[0] != n {
        return None;
    }
    let elements = Elements::from_bytes(kdprune_plugin_api::DType::F32, &bytes)?;
    HostTensor::new(shape.iter().map(|&d| d as u64).collect(), elements)
}

/// Writes an embedding atomically.
pub(super) fn write_embedding(path: &Path, t: &HostTensor) -> Result<(), String> {
    let shape: Vec<usize> = t.shape().iter().map(|&d| d as usize).collect();
    write_f32(
        path,
        "embedding",
        shape,
        t.elements().bytes(),
        HashMap::new(),
    )
}

fn hash_file(hasher: &mut Sha256, path: &Path) -> Result<(), TeacherError> {
    let bytes = std::fs::read(path).map_err(|e| TeacherError::Model {
        model: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(&bytes);
    Ok(())
}

impl KeyBase {
    pub(super) fn new(spec: &TeacherSpec, registry: &Registry) -> Result<Self, TeacherError> {
        let mut h = Sha256::new();
        match &spec.source {
            TeacherSource::Onnx {
                model,
                input,
                output,
                ..
            } => {
                h.update(b"onnx");
                hash_file(&mut h, model)?;
                h.update(format!("{input:?}|{output:?}"));
            }
            TeacherSource::Ensemble { .. } => {
                return Err(TeacherError::Runtime(format!(
                    "teacher {}: an ensemble's key is made of its members' (teacher::content_keys)",
                    spec.name
                )))
            }
            TeacherSource::Trained { .. } => {
                return Err(TeacherError::Runtime(format!(
                    "teacher {}: a teacher to train is keyed by its recipe (teacher::content_keys) and served as the model it becomes",
                    spec.name
                )))
            }
            TeacherSource::Precomputed { train, test } => {
                h.update(b"precomputed");
                hash_file(&mut h, train)?;
                hash_file(&mut h, test)?;
            }
            TeacherSource::Plugin { name, params, .. } => {
                h.update(b"plugin");
                let plugin = registry.get(name, kdprune_plugin_api::PluginKind::Teacher)?;
                // Its source hash where it declares one (kdprune-plugin-build), as cell keys
                // take it: the same source built elsewhere serves the same outputs.
                match &plugin.source {
                    Some(source) => {
                        h.update(b"source");
                        h.update(source.as_bytes());
                    }
                    None => hash_file(&mut h, &plugin.file)?,
                }
                h.update(name.as_bytes());
                h.update(format!("{params:?}"));
            }
        }
        let pre = &spec.preprocess;
        h.update(format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}",
            pre.scale, pre.mean, pre.std, spec.layout, spec.output_kind
        ));
        Ok(Self(h))
    }

    /// The key of the teacher alone, hex.
    pub(super) fn hex(&self) -> String {
        self.0
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub(super) fn key_for(&self, data: &Dataset) -> CacheKey {
        let mut h = self.0.clone();
        h.update(format!(
            "{:?}|{}|{}",
            data.sample_shape,
            data.num_classes,
            data.len()
        ));
        // Rows are hashed through one reused byte buffer: hashing value by value is ~10x
        // slower on a 60k-image set.
        let mut buf = Vec::with_capacity(data.dim() * 4);
        for row in data.features.rows() {
            buf.clear();
            buf.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&buf);
        }
        buf.clear();
        buf.extend(data.labels.iter().flat_map(|y| y.to_le_bytes()));
        h.update(&buf);
        CacheKey(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

fn kind_name(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::Auto | OutputKind::Logits => "logits",
        OutputKind::Probabilities => "probabilities",
        OutputKind::LogProbabilities => "log_probabilities",
    }
}

/// The output kind a scores file's metadata names.
fn kind_of(meta: &HashMap<String, String>) -> OutputKind {
    match meta.get("output_kind").map(String::as_str) {
        Some("probabilities") => OutputKind::Probabilities,
        Some("log_probabilities") => OutputKind::LogProbabilities,
        _ => OutputKind::Logits,
    }
}

/// Reads cached scores `[n, c]`, or `None` when absent or unusable.
pub(super) fn read(
    path: &Path,
    n: usize,
    c: usize,
) -> Result<Option<(Array2<f32>, OutputKind)>, TeacherError> {
    let Some((shape, bytes, meta)) = read_f32(path, "scores") else {
        return Ok(None);
    };
    if shape != [n, c] {
        return Ok(None);
    }
    let kind = kind_of(&meta);
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Array2::from_shape_vec((n, c), values)
        .ok()
        .map(|a| (a, kind)))
}

/// Writes scores `[n, c]` atomically, with the output kind they came from in the metadata.
pub(super) fn write(
    path: &Path,
    logits: &Array2<f32>,
    kind: OutputKind,
) -> Result<(), TeacherError> {
    write_scores(path, logits, kind, HashMap::new())
}

/// [`write`] with more metadata.
fn write_scores(
    path: &Path,
    logits: &Array2<f32>,
    kind: OutputKind,
    mut meta: HashMap<String, String>,
) -> Result<(), TeacherError> {
    let standard = logits.as_standard_layout();
    let values = standard.as_slice().unwrap_or(&[]);
    meta.insert("output_kind".to_string(), kind_name(kind).to_string());
    write_f32(
        path,
        "scores",
        vec![logits.nrows(), logits.ncols()],
        bytemuck::cast_slice(values),
        meta,
    )
    .map_err(|message| TeacherError::Cache {
        path: path.to_path_buf(),
        message,
    })
}

/// Writes shard rows `start..start + logits.nrows()` of a set's scores, atomically.
pub(super) fn write_part(
    path: &Path,
    start: usize,
    logits: &Array2<f32>,
    kind: OutputKind,
) -> Result<(), TeacherError> {
    let meta = HashMap::from([("start".to_string(), start.to_string())]);
    write_scores(path, logits, kind, meta)
}

/// The whole set's scores `[n, c]` joined from the part files of some shard count whose parts
/// are all present, readable and together cover `0..n` in order; `None` when no count has
/// every part (the set is then labelled here). Returns the part files too, for removal.
pub(super) fn assemble(
    full: &Path,
    n: usize,
    c: usize,
) -> Option<(Array2<f32>, OutputKind, Vec<PathBuf>)> {
    let dir = full.parent()?;
    let stem = full.file_name()?.to_str()?.strip_suffix(".safetensors")?;
    let prefix = format!("{stem}.part-");
    let mut counts: Vec<usize> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let tag = name.strip_prefix(&prefix)?.strip_suffix(".safetensors")?;
            tag.split_once("-of-")?.1.parse().ok()
        })
        .collect();
    counts.sort_unstable();
    counts.dedup();
    'count: for count in counts {
        let mut values = Vec::with_capacity(n * c);
        let mut kind = None;
        let mut files = Vec::new();
        for i in 0..count {
            let path = dir.join(format!("{prefix}{i}-of-{count}.safetensors"));
            let Some((shape, bytes, meta)) = read_f32(&path, "scores") else {
                continue 'count;
            };
            let start: Option<usize> = meta.get("start").and_then(|s| s.parse().ok());
            if shape.len() != 2 || shape[1] != c || start != Some(values.len() / c.max(1)) {
                continue 'count;
            }
            let this = kind_of(&meta);
            if kind.is_some_and(|k| k != this) {
                continue 'count;
            }
            kind = Some(this);
            values.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            files.push(path);
        }
        if values.len() == n * c {
            let logits = Array2::from_shape_vec((n, c), values).ok()?;
            return Some((logits, kind.unwrap_or(OutputKind::Logits), files));
        }
    }
    None
}
