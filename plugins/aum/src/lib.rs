//! kdprune pruning method `aum` (Pleiss et al. 2020, "Identifying Mislabeled Data using the
//! Area Under the Margin Ranking"): the margin of the assigned logit over the largest other,
//! `s_y − max_{j≠y} s_j`, averaged over the proxy's epochs (and runs). Low means hard (a
//! negative AUM flags a likely mislabelled example).
//!
//! Reads `dynamics/batch/margin` `[R, E, N]`: the logits of each example's own training
//! minibatch, as Pleiss et al.'s `AUMCalculator` is fed.

use kdprune_plugin_api::{
    export_plugins,
    records::{mean_over_runs, records, Records},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// AUM per run `[R][N]` over the first `epochs` epochs of margins `[R, E, N]`.
pub fn aum(margins: &Records, epochs: usize) -> Vec<Vec<f32>> {
    (0..margins.runs)
        .map(|r| {
            let mut sum = vec![0f32; margins.n];
            for e in 0..epochs {
                for (s, &m) in sum.iter_mut().zip(margins.at(r, e)) {
                    *s += m;
                }
            }
            sum.into_iter().map(|s| s / epochs as f32).collect()
        })
        .collect()
}

pub struct Aum;

impl Scorer for Aum {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "aum",
            env!("CARGO_PKG_VERSION"),
            "area under the margin (assigned logit minus the largest other, mean over epochs and runs; Pleiss et al. 2020)",
        )
        .param("epochs", ParamValue::Int(0), "epochs averaged, from the first; 0: all")
        .input("dynamics/batch/margin")
        .high_is_hard(false)
        .budget_independent()
        .score_meaning("low (negative) AUM: hard or mislabelled; high: easy")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let margins = records(request, "dynamics/batch/margin")?;
        let wanted = request.int("epochs")?;
        let epochs = match wanted {
            0 => margins.records,
            e if e > 0 && (e as usize) <= margins.records => e as usize,
            e => {
                return Err(PluginError::new(format!(
                    "epochs = {e}: the proxy trained {} epochs",
                    margins.records
                )))
            }
        };
        Ok(Selection::scores(mean_over_runs(&aum(&margins, epochs))))
    }
}

export_plugins! {
    scorers: [Aum],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_margins_over_epochs() {
        // One run, 3 epochs, 2 examples: margins (2, -1), (4, -3), (0, 1).
        let r = Records {
            values: vec![2.0, -1.0, 4.0, -3.0, 0.0, 1.0],
            runs: 1,
            records: 3,
            n: 2,
            width: 1,
        };
        assert_eq!(aum(&r, 3), vec![vec![2.0, -1.0]]);
        assert_eq!(aum(&r, 2), vec![vec![3.0, -2.0]]);
    }
}
