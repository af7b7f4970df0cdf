//! The score cache: the per-example scores of a budget-independent method for one seed, in
//! `<cache_dir>/scores-<key>.safetensors` (tensor `scores`, f32 `[N]`), named by a content key
//! of everything the scores depend on: the plugin (name, version, its source hash or
//! else its library's SHA-256),
//! its parameters, the seed, the training set's content and every input tensor the plugin
//! receives (name, dtype, shape, bytes). Any process that needs those scores again — another
//! shard of a sweep (`run --shard i/n`), `kdprune score` before a `run`, a rerun with a new
//! α list or student — reads them instead of calling the plugin.
//!
//! A file whose key, shape or checksum (SHA-256 of the values) does not match is ignored with
//! a warning and the plugin is called; a write that fails is a warning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kdprune_plugin_api::Tensor;
use sha2::{Digest, Sha256};

use crate::select::Answer;

/// Bumped when the meaning of a cached score changes.
const FORMAT: &str = "kdprune-scores-1";

/// The content key: hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreKey(String);

/// The SHA-256 of the input tensors a plugin receives, in order (name, dtype, shape, bytes).
pub fn inputs_hash(inputs: &[Tensor<'_>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for t in inputs {
        h.update(t.name.as_str().as_bytes());
        h.update([0]);
        h.update(format!("{:?}", t.dtype));
        for d in t.shape.as_slice() {
            h.update(d.to_le_bytes());
        }
        h.update((t.bytes.len() as u64).to_le_bytes());
        h.update(t.bytes.as_slice());
    }
    h.finalize().into()
}

impl ScoreKey {
    /// `plugin`: the method's identity (name, version, source hash or library SHA-256,
    /// parameters as JSON);
    /// `data_hash`: the content hash of the training set the plugin sees; `inputs`: from
    /// [`inputs_hash`].
    pub fn new(
        plugin: &serde_json::Value,
        seed: u64,
        data_hash: &[u8; 32],
        inputs: &[u8; 32],
    ) -> Self {
        let mut h = Sha256::new();
        h.update(FORMAT);
        h.update(plugin.to_string());
        h.update(seed.to_le_bytes());
        h.update(data_hash);
        h.update(inputs);
        Self(crate::hash::hex(&h.finalize()))
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("scores-{}.safetensors", &self.0[..32]))
    }
}

/// The cached scores `[n]` at `path`, or `None` when absent, for another key or another
/// size, or damaged (a warning says which).
pub fn read(path: &Path, key: &ScoreKey, n: usize) -> Option<Vec<f32>> {
    let bytes = std::fs::read(path).ok()?;
    let parsed = (|| {
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
        let meta = meta.metadata().clone()?;
        if meta.get("format").map(String::as_str) != Some(FORMAT) || meta.get("key") != Some(&key.0)
        {
            return None;
        }
        let file = safetensors::SafeTensors::deserialize(&bytes).ok()?;
        let view = file.tensor("scores").ok()?;
        let ok = view.dtype() == safetensors::Dtype::F32
            && view.shape() == [n]
            && meta.get("sha256") == Some(&crate::hash::sha256_hex(view.data()));
        ok.then(|| {
            view.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect::<Vec<f32>>()
        })
    })();
    if parsed.is_none() {
        tracing::warn!(cache = %path.display(), "ignoring a score cache file that is unreadable, altered or for other inputs; scoring again");
    }
    parsed
}

/// Writes `scores` atomically (a temporary file of this process renamed into place: two
/// shards that score the same method at once never write one file).
pub fn write(path: &Path, key: &ScoreKey, scores: &[f32]) -> Result<(), String> {
    let bytes: Vec<u8> = scores.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![scores.len()], &bytes)
            .map_err(|e| e.to_string())?;
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("key".to_string(), key.0.clone()),
        ("sha256".to_string(), crate::hash::sha256_hex(&bytes)),
    ]);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the folder: {e}"))?;
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    safetensors::serialize_to_file([("scores", view)], Some(meta), &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write: {e}")
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot rename into place: {e}")
    })
}

/// The score cache of one run: the cache folder, the training set's content hash, and each
/// method's input hash (computed once per method: the inputs are the same for every seed).
pub struct ScoreCache<'a> {
    dir: &'a Path,
    data_hash: [u8; 32],
    inputs: HashMap<usize, [u8; 32]>,
}

impl<'a> ScoreCache<'a> {
    pub fn new(dir: &'a Path, data_hash: [u8; 32]) -> Self {
        Self {
            dir,
            data_hash,
            inputs: HashMap::new(),
        }
    }

    /// Method `method`'s budget-independent scores `[n]` for `seed`: from the cache, or from
    /// `score` (then written to the cache). `identity`: the plugin's name, version, source
    /// hash or library SHA-256, and parameters; `inputs`: the tensors the plugin receives.
    pub fn scores<E>(
        &mut self,
        method: usize,
        identity: &serde_json::Value,
        seed: u64,
        inputs: &[Tensor<'_>],
        n: usize,
        score: impl FnOnce() -> Result<Answer, E>,
    ) -> Result<Answer, E> {
        let inputs = *self
            .inputs
            .entry(method)
            .or_insert_with(|| inputs_hash(inputs));
        let key = ScoreKey::new(identity, seed, &self.data_hash, &inputs);
        let path = key.path(self.dir);
        if path.exists() {
            if let Some(scores) = read(&path, &key, n) {
                tracing::info!(cache = %path.display(), seed, "scores from the cache");
                return Ok(Answer::Scores(scores));
            }
        }
        let answer = score()?;
        if let Answer::Scores(values) = &answer {
            if let Err(message) = write(&path, &key, values) {
                tracing::warn!(cache = %path.display(), "the scores could not be cached ({message}); going on");
            }
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_round_trip_and_a_changed_input_or_file_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = serde_json::json!({"method": "el2n", "version": "1"});
        let key = ScoreKey::new(&plugin, 3, &[1; 32], &[2; 32]);
        let path = key.path(dir.path());
        let scores = [0.5f32, -1.0, 7.25];
        write(&path, &key, &scores).unwrap();
        assert_eq!(read(&path, &key, 3), Some(scores.to_vec()));
        assert_eq!(read(&path, &key, 4), None, "another training set size");
        let other_inputs = ScoreKey::new(&plugin, 3, &[1; 32], &[9; 32]);
        assert_ne!(other_inputs.path(dir.path()), path);
        assert_eq!(read(&path, &other_inputs, 3), None);
        assert_ne!(
            ScoreKey::new(&plugin, 4, &[1; 32], &[2; 32]),
            key,
            "another seed"
        );
        // A flipped byte in the values fails the checksum.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(read(&path, &key, 3), None);
    }
}
