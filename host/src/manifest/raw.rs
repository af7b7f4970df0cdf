//! The manifest as written: serde types that mirror the TOML, unknown fields rejected.
//! Values that are range-checked later keep their position ([`Spanned`]) so the error can
//! point at them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The training fields `[dynamics]` and `[teacher] train` may set over the `[student]`'s,
/// declared once: handed, after the tokens given, to the macro named.
macro_rules! with_training_fields {
    ($then:ident! { $($before:tt)* }) => {
        $then! {
            $($before)*
            hidden: Option<Vec<usize>>,
            layers: Option<Spanned<Vec<Spanned<String>>>>,
            epochs: Option<Spanned<usize>>,
            batch_size: Option<Spanned<usize>>,
            lr: Option<Spanned<f32>>,
            optimizer: Option<OptimizerName>,
            momentum: Option<Spanned<f32>>,
            nesterov: Option<bool>,
            weight_decay: Option<Spanned<f32>>,
            schedule: Option<ScheduleName>,
            warmup_epochs: Option<usize>,
            clip_grad_norm: Option<Spanned<f32>>,
        }
    };
}

/// A raw table with fields of its own and the training fields, which `take_training` lifts
/// out as a [`TrainingOverlay`].
macro_rules! training_table {
    ($(#[$meta:meta])* $name:ident { $($own:ident: $own_ty:ty,)* }) => {
        with_training_fields!(training_table! { @fields $(#[$meta])* $name { $($own: $own_ty,)* } });
    };
    (@fields $(#[$meta:meta])* $name:ident { $($own:ident: $own_ty:ty,)* } $($field:ident: $ty:ty,)*) => {
        $(#[$meta])*
        pub struct $name {
            $(pub $own: $own_ty,)*
            $(pub $field: $ty,)*
        }

        impl $name {
            /// Takes the training fields out of the table.
            pub fn take_training(&mut self) -> TrainingOverlay {
                TrainingOverlay {
                    $($field: self.$field.take(),)*
                }
            }
        }
    };
}

/// [`TrainingOverlay`] from the list of [`with_training_fields`].
macro_rules! overlay_struct {
    ($($field:ident: $ty:ty,)*) => {
        /// The training fields `[dynamics]` and `[teacher] train` may set over the `[student]`'s.
        pub struct TrainingOverlay {
            $(pub $field: $ty,)*
        }

        impl TrainingOverlay {
            /// The fields set, by name.
            pub fn set_fields(&self) -> Vec<&'static str> {
                let mut set = Vec::new();
                $(if self.$field.is_some() {
                    set.push(stringify!($field));
                })*
                set
            }
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub name: Option<String>,
    #[serde(default)]
    pub seeds: Option<Spanned<Vec<u64>>>,
    pub output: Spanned<String>,
    #[serde(default)]
    pub plugin_dirs: Vec<String>,
    pub cache_dir: Option<String>,
    pub on_plugin_error: Option<crate::plugins::OnPluginError>,
    pub plugin_sha256: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub allow_writable_plugins: bool,
    pub data: RawData,
    pub teacher: Option<Spanned<RawTeachers>>,
    pub student: RawStudent,
    pub distillation: Option<RawDistillation>,
    pub dynamics: Option<Spanned<RawDynamics>>,
    pub prune: Spanned<Vec<Spanned<RawPrune>>>,
}

training_table! {
    /// `[dynamics]`: the proxy model (fields as in `[student]`, each defaulting to the
    /// student's) and what is recorded.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    RawDynamics {
        runs: Option<Spanned<usize>>,
        seed: Option<u64>,
        checkpoints: Option<Spanned<Vec<usize>>>,
        early_steps: Option<Spanned<Vec<usize>>>,
        max_memory: Option<Spanned<RawBytes>>,
        from: Option<Spanned<RawFolders>>,
        layout: Option<crate::dynamics::import::Layout>,
    }
}

/// One folder or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawFolders {
    One(String),
    Many(Vec<String>),
}

/// `[data] format`: the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    Idx,
    Csv,
    Npy,
    Npz,
    ImageFolder,
    Cifar10,
    Cifar100,
}

impl std::fmt::Display for DataFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataFormat::Idx => "idx",
            DataFormat::Csv => "csv",
            DataFormat::Npy => "npy",
            DataFormat::Npz => "npz",
            DataFormat::ImageFolder => "image_folder",
            DataFormat::Cifar10 => "cifar10",
            DataFormat::Cifar100 => "cifar100",
        })
    }
}

/// `optimizer` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    Sgd,
    Adamw,
}

/// `schedule` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleName {
    Cosine,
    Constant,
    Step,
}

/// `[student] augment.teacher` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AugmentTeacher {
    Cached,
    Online,
}

/// A size in bytes: a number, or text such as `"4GiB"`, `"512MiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawBytes {
    Number(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    pub format: Spanned<DataFormat>,
    pub train: Option<String>,
    pub test: Option<String>,
    pub train_images: Option<String>,
    pub train_labels: Option<String>,
    pub test_images: Option<String>,
    pub test_labels: Option<String>,
    pub label: Option<RawLabel>,
    pub header: Option<bool>,
    pub delimiter: Option<String>,
    pub classes: Option<Vec<String>>,
    pub num_classes: Option<usize>,
    pub sample_shape: Option<Spanned<Vec<usize>>>,
    pub holdout: Option<Spanned<f64>>,
    pub holdout_last: Option<Spanned<usize>>,
    pub normalise: Option<Spanned<RawNormalise>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawLabel {
    Name(String),
    Index(i64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNormalise {
    pub scale: Option<f32>,
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    #[serde(default)]
    pub standardize: bool,
}

/// `[teacher]` (one table) or `[[teacher]]` (several).
#[derive(Debug)]
pub enum RawTeachers {
    One(Box<RawTeacher>),
    Many(Vec<Spanned<RawTeacher>>),
}

impl<'de> Deserialize<'de> for RawTeachers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawTeachers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [teacher] table or [[teacher]] tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                // The fields go through TOML's own deserializer, so their spans are kept.
                RawTeacher::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|t| RawTeachers::One(Box::new(t)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(t) = seq.next_element::<Spanned<RawTeacher>>()? {
                    all.push(t);
                }
                Ok(RawTeachers::Many(all))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `[teacher] logits`: `.npy` files `[N, C]`, one per set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogits {
    pub train: String,
    pub test: String,
}

/// One α of `[distillation] alphas`: a number, or the word `"auto"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawAlpha {
    Value(f32),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeacher {
    pub name: Option<String>,
    pub onnx: Option<String>,
    /// Logits made elsewhere: `{ train = "train.npy", test = "test.npy" }`.
    pub logits: Option<RawLogits>,
    /// The names of earlier teachers whose outputs this one combines.
    pub ensemble: Option<Vec<String>>,
    pub combine: Option<crate::teacher::spec::Combine>,
    pub plugin: Option<String>,
    pub params: Option<Spanned<toml::Table>>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub output_kind: Option<crate::teacher::spec::OutputKind>,
    pub provider: Option<crate::teacher::spec::Provider>,
    #[serde(default)]
    pub allow_cpu_fallback: bool,
    pub batch_size: Option<Spanned<usize>>,
    pub threads: Option<usize>,
    pub ort_library: Option<String>,
    pub preprocess: Option<Spanned<RawPreprocess>>,
    /// A named intermediate tensor of the ONNX model served as `embeddings/teacher`.
    pub embedding: Option<Spanned<String>>,
    /// A teacher the host trains on the full training set: `train = { ... }`.
    pub train: Option<Spanned<RawTrainedTeacher>>,
}

training_table! {
    /// `[teacher] train = { ... }`: the fields of `[student]` that change training, each
    /// defaulting to the student's (`train = {}` is the student's own architecture: the
    /// self-distillation setting), and the seed of the teacher's training.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    RawTrainedTeacher {
        seed: Option<u64>,
    }
}

with_training_fields!(overlay_struct! {});

impl TrainingOverlay {
    /// `student` with these fields over its own; a new architecture or optimiser replaces the
    /// student's whole (its other fields would not fit it).
    pub fn over(self, student: &RawStudent) -> RawStudent {
        let mut out = student.clone();
        if self.hidden.is_some() || self.layers.is_some() {
            out.hidden = self.hidden;
            out.layers = self.layers;
        }
        if let Some(e) = self.epochs {
            out.epochs = e;
        }
        if let Some(lr) = self.lr {
            out.lr = lr;
        }
        if self.optimizer.is_some() {
            out.optimizer = self.optimizer;
            out.momentum = None;
            out.nesterov = None;
            out.betas = None;
        }
        out.batch_size = self.batch_size.or(out.batch_size);
        out.momentum = self.momentum.or(out.momentum);
        out.nesterov = self.nesterov.or(out.nesterov);
        out.weight_decay = self.weight_decay.or(out.weight_decay);
        if self.schedule.is_some() {
            out.schedule = self.schedule;
        }
        out.warmup_epochs = self.warmup_epochs.or(out.warmup_epochs);
        out.clip_grad_norm = self.clip_grad_norm.or(out.clip_grad_norm);
        out
    }
}

impl RawTrainedTeacher {
    /// Whether the table changes the student's architecture (else it is self-distillation).
    pub fn changes_architecture(&self) -> bool {
        self.hidden.is_some() || self.layers.is_some()
    }
    /// The seed, and the training fields.
    pub fn split(mut self) -> (Option<u64>, TrainingOverlay) {
        let overlay = self.take_training();
        (self.seed, overlay)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreprocess {
    pub scale: Option<f32>,
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    pub layout: Option<crate::teacher::spec::Layout>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStudent {
    pub hidden: Option<Vec<usize>>,
    pub layers: Option<Spanned<Vec<Spanned<String>>>>,
    pub epochs: Spanned<usize>,
    pub batch_size: Option<Spanned<usize>>,
    pub lr: Spanned<f32>,
    pub optimizer: Option<OptimizerName>,
    pub momentum: Option<Spanned<f32>>,
    pub nesterov: Option<bool>,
    pub betas: Option<Spanned<[f32; 2]>>,
    pub weight_decay: Option<Spanned<f32>>,
    pub schedule: Option<ScheduleName>,
    pub step_every: Option<Spanned<usize>>,
    pub step_gamma: Option<Spanned<f32>>,
    pub warmup_epochs: Option<usize>,
    pub clip_grad_norm: Option<Spanned<f32>>,
    pub augment: Option<RawAugment>,
    pub init: Option<crate::train::spec::Init>,
    pub precision: Option<Spanned<crate::train::kernels::gemm::Precision>>,
    #[serde(default)]
    pub save: bool,
    pub infobatch: Option<Spanned<RawInfoBatch>>,
}

/// `[student] infobatch = { ratio, delta }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInfoBatch {
    pub ratio: Option<f32>,
    pub delta: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAugment {
    #[serde(default)]
    pub crop_padding: usize,
    #[serde(default)]
    pub flip: bool,
    pub teacher: Option<AugmentTeacher>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDistillation {
    pub alphas: Spanned<Vec<Spanned<RawAlpha>>>,
    pub temperature: Option<Spanned<f32>>,
    pub auto: Option<Spanned<RawAutoSearch>>,
}

/// `[distillation] auto = { candidates, holdout }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutoSearch {
    pub candidates: Option<Spanned<Vec<Spanned<f32>>>>,
    pub holdout: Option<Spanned<f32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrune {
    pub method: Spanned<String>,
    pub keep: Spanned<Vec<Spanned<f32>>>,
    pub policy: Option<Spanned<String>>,
    pub balance: Option<Spanned<String>>,
    pub policy_params: Option<Spanned<BTreeMap<String, toml::Value>>>,
    pub params: Option<Spanned<BTreeMap<String, toml::Value>>>,
}
