//! Test fixture, not a pruning method: plugins that misbehave in the ways a real plugin can,
//! so the end-to-end tests can check that the host turns each into a clear error.
//! Selected by name: `faulty-panics`, `faulty-out-of-range`, `faulty-teacher-panics`.

use kdprune_plugin_api::{
    export_plugins, BatchView, PluginError, PluginInfo, ScoreRequest, Scorer, Selection, Teacher,
    TeacherInit,
};

pub struct Panics;

impl Scorer for Panics {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method("faulty-panics", "0.0.1", "panics when asked to score")
    }
    fn score(_: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        panic!("deliberate panic inside the plugin")
    }
}

pub struct OutOfRange;

impl Scorer for OutOfRange {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "faulty-out-of-range",
            "0.0.1",
            "returns an index equal to N",
        )
    }
    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let n = request.train.len() as u32;
        let mut indices: Vec<u32> = (0..request.budget as u32 - 1).collect();
        indices.push(n);
        Ok(Selection::subset(indices))
    }
}

pub struct TeacherPanics;

impl Teacher for TeacherPanics {
    fn info() -> PluginInfo {
        PluginInfo::teacher(
            "faulty-teacher-panics",
            "0.0.1",
            "panics when asked for logits",
        )
    }
    fn new(_: &TeacherInit<'_>) -> Result<Self, PluginError> {
        Ok(Self)
    }
    fn logits(&mut self, _: BatchView<'_>) -> Result<Vec<f32>, PluginError> {
        panic!("deliberate panic in a teacher")
    }
}

export_plugins! {
    scorers: [Panics, OutOfRange],
    teachers: [TeacherPanics],
}
