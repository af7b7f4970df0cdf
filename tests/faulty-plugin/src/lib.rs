//! Test fixture, not a pruning method: plugins that misbehave in the ways a real plugin can,
//! so the end-to-end tests can check that the host turns each into a clear error.
//! Selected by name: `faulty-panics`, `faulty-out-of-range`, `faulty-teacher-panics`,
//! `faulty-teacher-infinite`.

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

/// Answers +inf for every class of every example.
pub struct TeacherInfinite {
    classes: usize,
    dim: usize,
}

impl Teacher for TeacherInfinite {
    fn info() -> PluginInfo {
        PluginInfo::teacher("faulty-teacher-infinite", "0.0.1", "answers +inf logits")
    }
    fn new(init: &TeacherInit<'_>) -> Result<Self, PluginError> {
        let dim = init.train.shape.iter().skip(1).product::<u64>() as usize;
        Ok(Self {
            classes: init.train.num_classes as usize,
            dim,
        })
    }
    fn logits(&mut self, batch: BatchView<'_>) -> Result<Vec<f32>, PluginError> {
        Ok(vec![f32::INFINITY; batch.rows(self.dim)? * self.classes])
    }
}

export_plugins! {
    scorers: [Panics, OutOfRange],
    teachers: [TeacherPanics, TeacherInfinite],
}
