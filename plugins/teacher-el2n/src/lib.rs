//! kdprune pruning method `teacher-el2n`: the EL2N score (Paul et al. 2021,
//! `‖p(x) − onehot(y)‖₂`) computed from the *teacher's* probabilities instead of an early
//! student's. High means hard. No proxy training: the teacher of the run is the scorer.

use kdprune_plugin_api::{
    export_plugins, PluginError, PluginInfo, ScoreRequest, Scorer, Selection, INPUT_SOFT_LABELS,
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
        .budget_independent()
        .score_meaning("far from the one-hot label under the teacher: hard or mislabelled")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let soft_labels = request.require(INPUT_SOFT_LABELS)?;
        let n = request.train.len();
        let c = request.train.num_classes as usize;
        if soft_labels.dims::<2>()? != [n, c] {
            return Err(PluginError::new(format!(
                "soft labels have shape {:?}, expected [{n}, {c}]",
                soft_labels.shape()
            )));
        }
        let probs = soft_labels.f32()?;
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
        Ok(Selection::scores(scores))
    }
}

export_plugins! {
    scorers: [TeacherEl2n],
    teachers: [],
}
