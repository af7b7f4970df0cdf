//! The soft-label cache: a teacher's log-space scores for one data set, in a file named by
//! a content hash of the model (or plugin library and parameters), the data, and the
//! preprocessing. A changed model, data file or preprocessing gives a new key; an unreadable
//! or truncated cache file is ignored and rebuilt.

use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use sha2::{Digest, Sha256};

use super::TeacherError;
use crate::data::Dataset;
use crate::manifest::{OutputKind, TeacherSource, TeacherSpec};
use crate::plugins::Registry;
use crate::tensor::{Elements, HostTensor};

/// Version 2 adds a SHA-256 of everything before it at the end of the file.
const MAGIC: &[u8; 8] = b"KDPTLOG2";

/// The part of the key that does not depend on the data set.
pub(super) struct KeyBase(Sha256);

/// A cache key: hex of a SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CacheKey(String);

impl CacheKey {
    pub(super) fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("teacher-{}.bin", &self.0[..32]))
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

/// A cached embedding `[n, H]`, or `None` when absent or unusable (the checksum in the
/// metadata guards against a changed file).
pub(super) fn read_embedding(path: &Path, n: usize) -> Option<HostTensor> {
    let bytes = std::fs::read(path).ok()?;
    let file = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    let view = file.tensor("embedding").ok()?;
    let checksum = meta.metadata().as_ref()?.get("sha256")?.clone();
    let digest: String = Sha256::digest(view.data())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != checksum || view.shape().first() != Some(&n) || view.shape().len() != 2 {
        tracing::warn!(cache = %path.display(), "ignoring a damaged teacher-embedding cache file; rebuilding it");
        return None;
    }
    let elements = Elements::from_bytes(kdprune_plugin_api::DType::F32, view.data())?;
    HostTensor::new(view.shape().iter().map(|&d| d as u64).collect(), elements)
}

/// Writes an embedding atomically.
pub(super) fn write_embedding(path: &Path, t: &HostTensor) -> Result<(), String> {
    let shape: Vec<usize> = t.shape().iter().map(|&d| d as usize).collect();
    let bytes = t.elements().bytes();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, bytes)
        .map_err(|e| e.to_string())?;
    let digest: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let meta = std::collections::HashMap::from([("sha256".to_string(), digest)]);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    safetensors::serialize_to_file([("embedding", view)], Some(meta), &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
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
            TeacherSource::Plugin { name, params, .. } => {
                h.update(b"plugin");
                let plugin = registry.get(name, kdprune_plugin_api::PluginKind::Teacher)?;
                hash_file(&mut h, &plugin.file)?;
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

fn kind_code(kind: OutputKind) -> u8 {
    match kind {
        OutputKind::Auto | OutputKind::Logits => 0,
        OutputKind::Probabilities => 1,
        OutputKind::LogProbabilities => 2,
    }
}

/// Reads cached scores `[n, c]`, or `None` when absent or unusable.
pub(super) fn read(
    path: &Path,
    n: usize,
    c: usize,
) -> Result<Option<(Array2<f32>, OutputKind)>, TeacherError> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    let header = MAGIC.len() + 17;
    let expected = header + n * c * 4 + 32;
    if bytes.len() != expected || &bytes[..8] != MAGIC {
        tracing::warn!(cache = %path.display(), "ignoring an unreadable soft-label cache file; rebuilding it");
        return Ok(None);
    }
    let (body, checksum) = bytes.split_at(expected - 32);
    if Sha256::digest(body).as_slice() != checksum {
        tracing::warn!(cache = %path.display(), "ignoring a soft-label cache file whose checksum does not match (changed or damaged); rebuilding it");
        return Ok(None);
    }
    let bytes = body;
    let rn = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let rc = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")) as usize;
    if rn != n || rc != c {
        return Ok(None);
    }
    let kind = match bytes[24] {
        1 => OutputKind::Probabilities,
        2 => OutputKind::LogProbabilities,
        _ => OutputKind::Logits,
    };
    let values: Vec<f32> = bytes[header..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Array2::from_shape_vec((n, c), values)
        .ok()
        .map(|a| (a, kind)))
}

/// Writes scores `[n, c]` atomically (a temporary file renamed into place).
pub(super) fn write(
    path: &Path,
    logits: &Array2<f32>,
    kind: OutputKind,
) -> Result<(), TeacherError> {
    let err = |message: String| TeacherError::Cache {
        path: path.to_path_buf(),
        message,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create the folder: {e}")))?;
    }
    // A name of this process's own: two runs sharing a cache folder never write one file.
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let mut bytes = Vec::with_capacity(25 + logits.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(logits.nrows() as u64).to_le_bytes());
    bytes.extend_from_slice(&(logits.ncols() as u64).to_le_bytes());
    bytes.push(kind_code(kind));
    for v in logits.iter() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let checksum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&checksum);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(format!("cannot write: {e}")));
    }
    Ok(())
}
