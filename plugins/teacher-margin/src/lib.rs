//! kdprune pruning method `teacher-el2n`: the EL2N score (Paul et al. 2021,
//! `‖p(x) − onehot(y)‖₂`) computed from the *teacher's* probabilities instead of an early
//! student's. High means hard. No proxy training: the teacher of the run is the scorer.

use kdprune_plugin_api::{
    abi_stable::std_types::RVec, export_plugins, PluginError, PluginInfo, ScoreRequest, Scorer,
    Selection, INPUT_SOFT_LABELS,
};

pub struct TeacherEl2n;

impl Scorer for TeacherEl2n {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "teacher-el2n",
            env!("CARGO_PKG_VERSION"),
            "EL2N score ||p_teacher - onehot(y)||_2 from the teacher's probabilities (high = hard)",
        )
        .input(INPUT_SOFT_LABELS)
        .high_is_hard(true)
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let probs = request
            .soft_labels
            .into_option()
            .ok_or_else(|| PluginError::new("needs the teacher's soft labels"))?;
        let n = request.train.len();
        let c = request.train.num_classes as usize;
        if probs.len() != n * c {
            return Err(PluginError::new(format!(
                "soft labels have {} values, expected {n} x {c}",
                probs.len()
            )));
        }
        let scores: Vec<f32> = probs
            .chunks_exact(c)
            .zip(request.train.labels.iter())
            .map(|(p, &y)| {
                p.iter()
                    .enumerate()
                    .map(|(j, &pj)| {
                        let target = if j == y as usize { 1.0 } else { 0.0 };
                        (pj - target) * (pj - target)
                    })
                    .sum::<f32>()
                    .sqrt()
            })
            .collect();
        Ok(Selection::Scores {
            values: RVec::from(scores),
        })
    }
}

export_plugins! {
    scorers: [TeacherEl2n],
    teachers: [],
}
