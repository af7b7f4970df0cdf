//! What the manifest says of a teacher, checked: its source (`TeacherSource`: ONNX model,
//! plugin, precomputed outputs, a network kdprune trains, an ensemble), its preprocessing and
//! layout, its output kind and provider.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::normalise::Normalisation;
use crate::train::spec::StudentSpec;

/// Memory layout the teacher expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[B, D]`.
    Flat,
    /// `[B, C, H, W]`, from the data's sample shape.
    Nchw,
}

/// What the teacher's output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Detected from the first batch: rows that sum to 1 are probabilities, rows whose
    /// exponentials sum to 1 are log-probabilities, anything else logits.
    Auto,
    Logits,
    Probabilities,
    LogProbabilities,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Cpu,
    Cuda,
}

/// How an ensemble teacher combines its members (each first turned into probabilities at
/// τ = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// The mean of the members' probabilities (an arithmetic mixture).
    Probabilities,
    /// The mean of their log-probabilities (a normalised geometric mean).
    LogProbabilities,
}

#[derive(Debug, Clone)]
pub enum TeacherSource {
    /// Earlier teachers of the manifest (indices into `Manifest::teachers`), combined.
    Ensemble {
        members: Vec<usize>,
        combine: Combine,
    },
    Onnx {
        model: PathBuf,
        input: Option<String>,
        output: Option<String>,
        provider: Provider,
        allow_cpu_fallback: bool,
        ort_library: Option<PathBuf>,
        threads: usize,
    },
    /// Logits (or probabilities) made elsewhere, `.npy` `[N, C]` for the training set as
    /// loaded (after any holdout split) and for the test set, rows in the sets' order.
    Precomputed { train: PathBuf, test: PathBuf },
    /// A network the host trains on the full training set (labels only) and serves as an ONNX
    /// model (`teacher::trained`); `spec` is the student's, with the table's fields over it.
    Trained {
        spec: Box<StudentSpec>,
        seed: u64,
        threads: usize,
    },
    Plugin {
        name: String,
        params: BTreeMap<String, toml::Value>,
        /// Where the params table is, for errors found once the plugin is known.
        params_at: (usize, usize),
    },
}

#[derive(Debug, Clone)]
pub struct TeacherSpec {
    /// Label in results (default: the model's file stem or the plugin's name).
    pub name: String,
    pub source: TeacherSource,
    /// The teacher's own preprocessing of the raw data.
    pub preprocess: Normalisation,
    pub layout: Layout,
    pub output_kind: OutputKind,
    pub batch_size: usize,
    /// A named intermediate tensor of the ONNX model, served as `embeddings/teacher`.
    pub embedding: Option<String>,
}

impl TeacherSource {
    /// The name a teacher gets when the manifest gives none: the model's or logits file's
    /// stem, the plugin's name, or `ensemble`/`trained`.
    pub fn default_name(&self) -> String {
        match self {
            TeacherSource::Onnx { model, .. } => model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "onnx".into()),
            TeacherSource::Plugin { name, .. } => name.clone(),
            TeacherSource::Precomputed { train, .. } => train
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "logits".into()),
            TeacherSource::Ensemble { .. } => "ensemble".into(),
            TeacherSource::Trained { .. } => "trained".into(),
        }
    }
}
