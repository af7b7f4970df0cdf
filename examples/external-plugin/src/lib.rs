//! An example of a pruning method written outside kdprune: `mean-train-loss`, the mean of an
//! example's training loss over the proxy's epochs and runs (the area under its loss curve:
//! examples learned late or never have a large one). High means hard.

use kdprune_plugin_api::{
    export_plugins,
    records::{records, Records},
    PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// The mean over runs and epochs of `loss` `[R, E, N]`.
pub fn mean_loss(loss: &Records) -> Vec<f32> {
    let mut mean = vec![0f32; loss.n];
    for run in 0..loss.runs {
        for epoch in 0..loss.records {
            for (m, &l) in mean.iter_mut().zip(loss.at(run, epoch)) {
                *m += l;
            }
        }
    }
    let count = (loss.runs * loss.records) as f32;
    mean.iter_mut().for_each(|m| *m /= count);
    mean
}

pub struct MeanTrainLoss;

impl Scorer for MeanTrainLoss {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "mean-train-loss",
            env!("CARGO_PKG_VERSION"),
            "mean training loss over the proxy's epochs and runs (high = learned late: hard)",
        )
        .input("dynamics/batch/loss")
        .high_is_hard(true)
        .budget_independent()
        .score_meaning("learned late or never: hard")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let loss = records(request, "dynamics/batch/loss")?;
        Ok(Selection::scores(mean_loss(&loss)))
    }
}

export_plugins! {
    scorers: [MeanTrainLoss],
    teachers: [],
}
