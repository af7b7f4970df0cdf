//! A cell's identity: the explicit, documented list of what its result depends on, hashed.
//! A result whose key is in `results.jsonl` is not run again (resume), so the key must change
//! whenever the result could, and only then:
//!
//! | part | what | why |
//! |---|---|---|
//! | `method`, `plugin_version`, `plugin_sha256` | the method's name, its declared version, the SHA-256 of its library file | a rebuilt plugin may score differently |
//! | `params`, `policy` | the checked parameters (defaults filled), the selection policy as described | |
//! | `keep`, `seed` | | |
//! | `alpha`, `temperature` | α; τ only when α > 0 | τ does not matter without a teacher |
//! | `teacher` | the content key (model file or plugin file and parameters, preprocessing, output kind) of the teacher the cell distils from when α > 0, else of the first teacher when the method reads teacher inputs | a replaced model must not reuse students distilled from the old one |
//! | `input_teacher` | the first teacher's key when the method reads its inputs and the cell distils from another | |
//! | `alpha_rule` | `"auto-v4"` (the search's name) and `alpha_search` (its candidates and held-out share) when α came from `alpha = "auto"`, whose key has no `alpha` | the search may change; a fixed α of the same value is another cell |
//! | `train_data`, `test_data` | SHA-256 of the student's view of each set (features, labels, shape, classes) | data edited in place, or another holdout |
//! | `dynamics` | the dynamics cache key, when the method reads the proxy | |
//! | `student` | the fields of `[student]` that change training: layers, epochs, batch size, lr, optimiser, weight decay, schedule, warm-up, clipping, augmentation, online teacher | `save` does not change the result; a field added to `[student]` joins this list only when it is set to something other than its default, so existing keys stay valid |
//!
//! The key is the first 24 hex digits of the SHA-256 of the JSON of [`CellKey`]; a test pins
//! its value for a fixed cell. [`CellKey::config`] is the same without the seed: the report
//! averages over seeds only results of one configuration.

use crate::hash::json_digest;
use serde::Serialize;

use crate::train::spec::StudentSpec;

/// What a student's result depends on in `[student]`.
#[derive(Debug, Clone, Serialize)]
pub struct StudentKey {
    layers: serde_json::Value,
    epochs: usize,
    batch_size: usize,
    lr: f32,
    optimizer: serde_json::Value,
    weight_decay: f32,
    schedule: serde_json::Value,
    warmup_epochs: usize,
    clip_grad_norm: Option<f32>,
    augment: serde_json::Value,
    /// Only when not the default (He), so keys from before it existed stay valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    init: Option<serde_json::Value>,
    /// Only when not f32, likewise.
    #[serde(skip_serializing_if = "crate::train::kernels::gemm::Precision::is_f32")]
    precision: crate::train::kernels::gemm::Precision,
}

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

impl StudentKey {
    pub fn new(spec: &StudentSpec) -> Self {
        Self {
            layers: json(&spec.layers),
            epochs: spec.epochs,
            batch_size: spec.batch_size,
            lr: spec.lr,
            optimizer: json(&spec.optimizer),
            weight_decay: spec.weight_decay,
            schedule: json(&spec.schedule),
            warmup_epochs: spec.warmup_epochs,
            clip_grad_norm: spec.clip_grad_norm,
            augment: json(&spec.augment),
            init: (spec.init != crate::train::spec::Init::He).then(|| json(&spec.init)),
            precision: spec.precision,
        }
    }
}

/// Everything a cell's result depends on (see the module doc).
#[derive(Debug, Clone, Serialize)]
pub struct CellKey {
    pub method: String,
    pub plugin_version: String,
    pub plugin_sha256: String,
    pub params: serde_json::Value,
    pub policy: String,
    pub keep: f32,
    /// The fixed α; absent for `"auto"`, whose α the cell searches for (`alpha_search`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f32>,
    pub temperature: Option<f32>,
    pub teacher: Option<String>,
    /// The first teacher's key when the method reads its inputs but the cell distils from
    /// another (absent otherwise, so keys from before several teachers stay valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_teacher: Option<String>,
    /// The `"auto"` search's name when α came from it ([`crate::train::alpha_search::RULE`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha_rule: Option<String>,
    /// How `"auto"` searched (its candidates and held-out share).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha_search: Option<crate::train::alpha_search::AutoSearch>,
    pub seed: u64,
    pub train_data: String,
    pub test_data: String,
    pub dynamics: Option<String>,
    pub student: StudentKey,
}

impl CellKey {
    /// The cell's key: 24 hex digits.
    pub fn key(&self) -> String {
        json_digest(&("cell-v2", self))
    }

    /// The key of the cell's configuration, the seed left out.
    pub fn config(&self) -> String {
        let mut without_seed = self.clone();
        without_seed.seed = 0;
        json_digest(&("config-v2", without_seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CellKey {
        let manifest = crate::manifest::parse(
            std::path::Path::new("/tmp/m.toml"),
            "output = \"out\"\n[data]\nformat = \"csv\"\ntrain = \"t.csv\"\nlabel = -1\nholdout = 0.2\n[student]\nhidden = [8]\nepochs = 2\nlr = 0.1\n[[prune]]\nmethod = \"random\"\nkeep = [0.5]\n",
        )
        .unwrap();
        CellKey {
            method: "random".into(),
            plugin_version: "0.2.0".into(),
            plugin_sha256: "ab".into(),
            params: serde_json::json!({"seed_offset": 0}),
            policy: "hardest".into(),
            keep: 0.5,
            alpha: Some(0.0),
            temperature: None,
            teacher: None,
            input_teacher: None,
            alpha_rule: None,
            alpha_search: None,
            seed: 3,
            train_data: "cd".into(),
            test_data: "ef".into(),
            dynamics: None,
            student: StudentKey::new(&manifest.student),
        }
    }

    #[test]
    fn the_key_is_pinned_and_moves_with_what_the_result_depends_on() {
        let k = key();
        // Pinned: a change here reruns every finished cell of every user; make it only
        // with a new "cell-vN" tag and a note in the release.
        assert_eq!(k.key(), "5040a3aceb955e9c02545981");
        let mut other = k.clone();
        other.seed = 4;
        assert_ne!(other.key(), k.key());
        assert_eq!(
            other.config(),
            k.config(),
            "the seed is not part of the configuration"
        );
        let mut other = k.clone();
        other.plugin_sha256 = "ac".into();
        assert_ne!(other.key(), k.key());
        let mut other = k.clone();
        other.teacher = Some("t".into());
        assert_ne!(other.key(), k.key());
        let mut other = k;
        other.student.epochs = 3;
        assert_ne!(other.config(), key().config());
    }
}
