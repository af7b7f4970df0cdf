//! kdprune pruning method `dual` (Cho et al., ICML 2025, "Lightweight Dataset Pruning without
//! Full Training via Example Difficulty and Prediction Uncertainty"; `behaapyy/dual-pruning`,
//! `exp_cifar/importance_evaluation.py`): over the first `T` epochs of the proxy's training,
//! for each window of `J` consecutive epochs, the true-class probability's sample standard
//! deviation (×10, as the reference) times one minus its mean; the mean over the windows (and
//! runs). High (uncertain and not yet learned early on) means keep.
//!
//! Reads `dynamics/batch/true_prob` `[R, E, N]`: the probability in each example's own
//! training minibatch, as the reference's `train.py` records it. Its selection, Beta sampling
//! around the kept fraction, is the host's `policy = "dual"` (docs/methods.md).

use kdprune_plugin_api::{
    export_plugins,
    records::{mean_over_runs, records, sliding_windows, Records},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// DUAL per run `[R][N]` over the first `epochs` records, with windows of `window` epochs.
pub fn dual(probs: &Records, epochs: usize, window: usize) -> Vec<Vec<f32>> {
    sliding_windows(probs, epochs, window, |mean, std| 10.0 * std * (1.0 - mean))
}

pub struct Dual;

impl Scorer for Dual {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "dual",
            env!("CARGO_PKG_VERSION"),
            "uncertainty × difficulty of the true-class probability over the first epochs' sliding windows (Cho et al. 2025)",
        )
        .param(
            "epochs",
            ParamValue::Int(30),
            "the first T epochs of the proxy read (the reference: 30 of 200 on CIFAR); clipped to the proxy's epochs",
        )
        .param(
            "window",
            ParamValue::Int(10),
            "epochs per window J (the reference: 10); clipped to T",
        )
        .input("dynamics/batch/true_prob")
        .high_is_hard(true)
        .budget_independent()
        .default_policy("dual")
        .score_meaning("uncertain and not yet learned in the early epochs: keep")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let probs = records(request, "dynamics/batch/true_prob")?;
        let (epochs, window) = (request.int("epochs")?, request.int("window")?);
        if epochs < 2 || window < 2 {
            return Err(PluginError::new(format!(
                "epochs = {epochs} and window = {window} must be at least 2"
            )));
        }
        if probs.records < 2 {
            return Err(PluginError::new(
                "needs a proxy trained for at least 2 epochs",
            ));
        }
        let epochs = (epochs as usize).min(probs.records);
        let window = (window as usize).min(epochs);
        Ok(Selection::scores(mean_over_runs(&dual(
            &probs, epochs, window,
        ))))
    }
}

export_plugins! {
    scorers: [Dual],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_over_windows_of_ten_std_times_one_minus_mean() {
        // One example, 4 epochs p = 0.1, 0.3, 0.3, 0.7, read 3 epochs in windows of 2:
        // (0.1, 0.3): mean 0.2, sample sd 0.141421 → 10 · 0.141421 · 0.8 = 1.131371;
        // (0.3, 0.3): sd 0 → 0. Mean 0.565685. The 4th epoch is not read.
        let r = Records {
            values: vec![0.1, 0.3, 0.3, 0.7],
            runs: 1,
            records: 4,
            n: 1,
            width: 1,
        };
        let s = dual(&r, 3, 2)[0][0];
        let expected = 10.0 * 0.02f64.sqrt() * 0.8 / 2.0;
        assert!((s as f64 - expected).abs() < 1e-6, "{s} vs {expected}");
        // Learned for good (p = 1 throughout) scores 0, however it got there.
        let learned = Records {
            values: vec![1.0; 4],
            runs: 1,
            records: 4,
            n: 1,
            width: 1,
        };
        assert!(dual(&learned, 4, 2)[0][0].abs() < 1e-9);
    }
}
