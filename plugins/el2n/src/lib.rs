//! kdprune pruning method `el2n` (Paul et al. 2021, "Deep Learning on a Data Diet"): the
//! error L2 norm `‖p(x) − onehot(y)‖₂` of a proxy early in training, averaged over the proxy's
//! runs. High means hard.
//!
//! Reads `dynamics/pass/el2n` `[R, T, N]` (an evaluation pass over the training set at each
//! record, as Paul et al. score the whole set at epoch t) and `dynamics/pass/epochs` `[T]`.

use kdprune_plugin_api::{
    export_plugins,
    records::{mean_over_runs, record_for_epoch, records, Records},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// The mean over runs of record `t`.
pub fn el2n_at(records: &Records, t: usize) -> Vec<f32> {
    let per_run: Vec<Vec<f32>> = (0..records.runs)
        .map(|r| records.at(r, t).to_vec())
        .collect();
    mean_over_runs(&per_run)
}

pub struct El2n;

impl Scorer for El2n {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "el2n",
            env!("CARGO_PKG_VERSION"),
            "EL2N ||p - onehot(y)||_2 of the proxy at an early epoch, mean over runs (Paul et al. 2021)",
        )
        .param(
            "epoch",
            ParamValue::Float(-2.0),
            "epoch of the pass record used (the nearest one); -2: the first checkpoint at or after epoch 1 ([dynamics] checkpoints default to a tenth of training, Paul et al.'s epoch 20 of 200)",
        )
        .input("dynamics/pass/el2n")
        .input("dynamics/pass/epochs")
        .high_is_hard(true)
        .budget_independent()
        .score_meaning("far from its one-hot label early in training: hard, rare or mislabelled")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let records = records(request, "dynamics/pass/el2n")?;
        let epochs = request.require("dynamics/pass/epochs")?.f32()?;
        let t = record_for_epoch(epochs, request.float("epoch")?)?;
        Ok(Selection::scores(el2n_at(&records, t)))
    }
}

export_plugins! {
    scorers: [El2n],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_the_chosen_record_over_runs() {
        // 2 runs, 2 records, 3 examples.
        let r = Records {
            values: vec![
                0.1, 0.2, 0.3, /* run 0, record 1: */ 0.5, 0.7, 0.9, //
                0.3, 0.4, 0.5, /* run 1, record 1: */ 0.7, 0.9, 1.1,
            ],
            runs: 2,
            records: 2,
            n: 3,
            width: 1,
        };
        assert_eq!(el2n_at(&r, 0), vec![0.2, 0.3, 0.4]);
        let v = el2n_at(&r, 1);
        for (a, b) in v.iter().zip([0.6, 0.8, 1.0]) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
