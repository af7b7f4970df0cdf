//! A cell's identity: the explicit, documented list of what its result depends on, hashed.
//! A result whose key is in `results.jsonl` is not run again (resume), so the key must change
//! whenever the result could, and only then:
//!
//! | part | what | why |
//! |---|---|---|
//! | `method`, `plugin_version`, `plugin_source` or `plugin_sha256` | the method's name, its declared version, and the SHA-256 of its source (its crate's files and kdprune-plugin-api's, which its build declares through kdprune-plugin-build) or, for a plugin that declares none, of its library file | changed source may score differently; the same source built elsewhere (another machine, compiler, checkout path or workspace) keeps its results, which a library's bytes would not |
//! | `params`, `policy` | the checked parameters (defaults filled), the selection policy as described | |
//! | `keep`, `seed` | | |
//! | `alpha`, `temperature` | α; τ only when α > 0 | τ does not matter without a teacher |
//! | `teacher` | the content key (model file, or a teacher plugin's source hash (its file where it declares none) and parameters, preprocessing, output kind) of the teacher the cell distils from when α > 0, else of the first teacher when the method reads teacher inputs | a replaced model must not reuse students distilled from the old one |
//! | `input_teacher` | the first teacher's key when the method reads its inputs and the cell distils from another | |
//! | `alpha_rule` | `"auto-v4"` (the search's name) and `alpha_search` (its candidates and held-out share) when α came from `alpha = "auto"`, whose key has no `alpha` | the search may change; a fixed α of the same value is another cell |
//! | `train_data`, `test_data` | SHA-256 of the student's view of each set (features, labels, shape, classes) | data edited in place, or another holdout |
//! | `dynamics` | the dynamics cache key, when the method reads the proxy | |
//! | `student` | the checked `[student]` ([`StudentSpec`]'s serde form) but `save`, which does not change the result | a field added to `[student]` joins by itself; skipped in its serde form while at its default, it leaves existing keys valid |
//!
//! The key is the first 24 hex digits of the SHA-256 of the JSON of [`CellKey`]; a test pins
//! its value for a fixed cell. [`CellKey::config`] is the same without the seed: the report
//! averages over seeds only results of one configuration.

use crate::hash::json_digest;
use serde::Serialize;

use crate::train::spec::StudentSpec;

/// What a student's result depends on in `[student]`: the checked [`StudentSpec`]'s serde
/// form, every field but those of [`NOT_IN_KEY`]. A field added to the spec joins the key by
/// itself; one whose serde form is skipped at its default (as `init` and `precision` are)
/// leaves existing keys valid. Top-level fields keep the spec's order and serde's text;
/// nested tables are `serde_json::Value`s (keys sorted, f32 widened to f64), which is how cell
/// keys have always written them.
#[derive(Debug, Clone)]
pub struct StudentKey(Vec<(String, serde_json::Value)>);

/// Fields of `[student]` that do not change a result: `save` only writes the student out.
pub const NOT_IN_KEY: &[&str] = &["save"];

impl StudentKey {
    pub fn new(spec: &StudentSpec) -> Self {
        let text = serde_json::to_string(spec).expect("a spec serialises");
        let Ordered(in_order) = serde_json::from_str(&text).expect("its own JSON reads back");
        let nested = serde_json::to_value(spec).expect("a spec serialises");
        Self(
            in_order
                .into_iter()
                .filter(|(field, _)| !NOT_IN_KEY.contains(&field.as_str()))
                .map(|(field, value)| {
                    let value = if value.is_object() || value.is_array() {
                        nested[&field].clone()
                    } else {
                        value
                    };
                    (field, value)
                })
                .collect(),
        )
    }

    /// The field `name` as the key holds it.
    #[cfg(test)]
    fn get_mut(&mut self, name: &str) -> Option<&mut serde_json::Value> {
        self.0.iter_mut().find(|(f, _)| f == name).map(|(_, v)| v)
    }
}

impl Serialize for StudentKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (field, value) in &self.0 {
            map.serialize_entry(field, value)?;
        }
        map.end()
    }
}

/// A JSON object's fields in the order they are written.
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(Ordered(fields))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Everything a cell's result depends on (see the module doc).
#[derive(Debug, Clone, Serialize)]
pub struct CellKey {
    pub method: String,
    pub plugin_version: String,
    /// The library file's SHA-256, for a plugin that declares no source hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_sha256: Option<String>,
    /// The plugin's source hash (kdprune-plugin-build), where it declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_source: Option<String>,
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
            plugin_sha256: Some("ab".into()),
            plugin_source: None,
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

    /// The hand-written list the key was before it was derived from the spec: the derived
    /// one must write the same JSON, so that no finished cell of any user runs again.
    fn hand_written(spec: &StudentSpec) -> String {
        fn json<T: Serialize>(value: &T) -> serde_json::Value {
            serde_json::to_value(value).unwrap()
        }
        let mut text = format!(
            "{{\"layers\":{},\"epochs\":{},\"batch_size\":{},\"lr\":{},\"optimizer\":{},\"weight_decay\":{},\"schedule\":{},\"warmup_epochs\":{},\"clip_grad_norm\":{},\"augment\":{}",
            json(&spec.layers),
            spec.epochs,
            spec.batch_size,
            serde_json::to_string(&spec.lr).unwrap(),
            json(&spec.optimizer),
            serde_json::to_string(&spec.weight_decay).unwrap(),
            json(&spec.schedule),
            spec.warmup_epochs,
            serde_json::to_string(&spec.clip_grad_norm).unwrap(),
            json(&spec.augment),
        );
        if spec.init != crate::train::spec::Init::He {
            text += &format!(",\"init\":{}", json(&spec.init));
        }
        if !spec.precision.is_f32() {
            text += &format!(
                ",\"precision\":{}",
                serde_json::to_string(&spec.precision).unwrap()
            );
        }
        text + "}"
    }

    #[test]
    fn the_derived_student_key_writes_what_the_hand_list_wrote() {
        let manifests = [
            "[student]\nhidden = [8]\nepochs = 2\nlr = 0.1\n",
            "[student]\nlayers = [\"conv 8\", \"relu\", \"maxpool 2\", \"dropout 0.3\"]\nepochs = 3\nlr = 0.05\nweight_decay = 5e-4\nmomentum = 0.9\nnesterov = true\nschedule = \"cosine\"\nwarmup_epochs = 1\nclip_grad_norm = 2.5\ninit = \"torch\"\nsave = true\naugment = { crop_padding = 2, flip = true }\n",
            "[student]\nhidden = [16, 8]\nepochs = 1\noptimizer = \"adamw\"\nlr = 3e-4\nbatch_size = 64\n",
        ];
        for student in manifests {
            let text = format!("output = \"out\"\n[data]\nformat = \"csv\"\ntrain = \"t.csv\"\nlabel = -1\nholdout = 0.2\nsample_shape = [1, 8, 8]\n{student}[[prune]]\nmethod = \"random\"\nkeep = [0.5]\n");
            let manifest = crate::manifest::parse(std::path::Path::new("/tmp/m.toml"), &text)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            let derived = serde_json::to_string(&StudentKey::new(&manifest.student)).unwrap();
            assert_eq!(derived, hand_written(&manifest.student), "{student}");
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
        other.plugin_sha256 = Some("ac".into());
        assert_ne!(other.key(), k.key());
        let mut other = k.clone();
        (other.plugin_sha256, other.plugin_source) = (None, Some("ab".into()));
        assert_ne!(other.key(), k.key(), "a source hash is not a file hash");
        let mut other = k.clone();
        other.teacher = Some("t".into());
        assert_ne!(other.key(), k.key());
        let mut other = k;
        *other.student.get_mut("epochs").unwrap() = 3.into();
        assert_ne!(other.config(), key().config());
    }
}
