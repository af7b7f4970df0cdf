//! kdprune pruning method `dynamic-uncertainty` (He et al. 2023, "Large-scale Dataset Pruning
//! with Dynamic Uncertainty"): the standard deviation of the true-class probability over a
//! sliding window of `J` epochs, averaged over the windows (and runs). High (uncertain over
//! training) means keep.
//!
//! Reads `dynamics/batch/true_prob` `[R, E, N]`, the probabilities of each example's training
//! minibatch, as the public implementations record them. The standard deviation is the
//! sample one (`n − 1`), as `torch.std`.

use kdprune_plugin_api::{
    export_plugins,
    records::{mean_over_runs, records, sliding_windows, Records},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// Dynamic uncertainty per run `[R][N]` with windows of `window` epochs.
pub fn dynamic_uncertainty(probs: &Records, window: usize) -> Vec<Vec<f32>> {
    sliding_windows(probs, probs.records, window, |_, std| std)
}

pub struct DynamicUncertainty;

impl Scorer for DynamicUncertainty {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "dynamic-uncertainty",
            env!("CARGO_PKG_VERSION"),
            "std of the true-class probability over sliding windows of epochs, mean over windows and runs (He et al. 2023)",
        )
        .param(
            "window",
            ParamValue::Int(10),
            "epochs per window J (He et al.: 10); clipped to the proxy's epochs",
        )
        .input("dynamics/batch/true_prob")
        .high_is_hard(true)
        .budget_independent()
        .score_meaning("its prediction kept changing during training: informative, keep")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let probs = records(request, "dynamics/batch/true_prob")?;
        let window = request.int("window")?;
        if window < 2 {
            return Err(PluginError::new(format!(
                "window = {window} must be at least 2"
            )));
        }
        if probs.records < 2 {
            return Err(PluginError::new(
                "needs a proxy trained for at least 2 epochs",
            ));
        }
        let window = (window as usize).min(probs.records);
        Ok(Selection::scores(mean_over_runs(&dynamic_uncertainty(
            &probs, window,
        ))))
    }
}

export_plugins! {
    scorers: [DynamicUncertainty],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_window_standard_deviations() {
        // One example, 4 epochs: p = 0.1, 0.3, 0.3, 0.7; windows of 3:
        // (0.1, 0.3, 0.3): mean 7/30, sample var = ((2/15)² + 2·(1/15)²)/2 = 3/225 → sd 0.11547;
        // (0.3, 0.3, 0.7): mean 13/30, var = (2·(2/15)² + (4/15)²)/2 = 12/225 → sd 0.23094.
        let r = Records {
            values: vec![0.1, 0.3, 0.3, 0.7],
            runs: 1,
            records: 4,
            n: 1,
            width: 1,
        };
        let du = dynamic_uncertainty(&r, 3)[0][0];
        let expected = ((3.0f64 / 225.0).sqrt() + (12.0f64 / 225.0).sqrt()) / 2.0;
        assert!((du as f64 - expected).abs() < 1e-6, "{du} vs {expected}");
        // A constant prediction is certain.
        let flat = Records {
            values: vec![0.9; 4],
            runs: 1,
            records: 4,
            n: 1,
            width: 1,
        };
        assert!(dynamic_uncertainty(&flat, 2)[0][0].abs() < 1e-6);
    }
}
