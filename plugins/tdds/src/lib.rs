//! kdprune pruning method `tdds` (Zhang et al. 2024, "Spanning Training Progress: Temporal
//! Dual-Depth Scoring for Enhanced Dataset Pruning"), following the authors' code
//! (`importance_evaluation.py`): per epoch `t`, the KL-like change of the prediction,
//! `d_t = Σ_c |p_{t+1,c} · (log p_{t+1,c} − log p_{t,c})|`; within each window of `J` epochs the
//! spread of those changes around their mean, `‖d − mean(d)‖₂`; windows summed with the
//! exponential weights `β (1 − β)^(T − J − k)` (later windows weigh more). Mean over runs.
//! High means keep.
//!
//! Reads `dynamics/batch/logits` `[R, E, N, C]`: the outputs of each example's training
//! minibatch, as the authors record them (with their index) every epoch.

use kdprune_plugin_api::{
    export_plugins,
    records::{mean_over_runs, records, softmax, Records},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// TDDS per run `[R][N]` over the first `trajectory` epochs of logits `[R, E, N, C]`.
pub fn tdds(logits: &Records, trajectory: usize, window: usize, decay: f64) -> Vec<Vec<f32>> {
    let c = logits.width;
    (0..logits.runs)
        .map(|r| {
            (0..logits.n)
                .map(|i| {
                    let log_p: Vec<Vec<f64>> = (0..trajectory)
                        .map(|e| {
                            softmax(&logits.at(r, e)[i * c..(i + 1) * c])
                                .into_iter()
                                .map(|p| p as f64)
                                .collect()
                        })
                        .collect();
                    let change = |t: usize| -> f64 {
                        (0..c)
                            .map(|j| {
                                let (a, b) = (log_p[t][j], log_p[t + 1][j]);
                                (b * ((b + 1e-8).ln() - (a + 1e-8).ln())).abs()
                            })
                            .sum()
                    };
                    let mut total = 0.0f64;
                    for k in 0..=trajectory - window {
                        let d: Vec<f64> = (k..k + window - 1).map(change).collect();
                        let mean = d.iter().sum::<f64>() / d.len() as f64;
                        let spread = d
                            .iter()
                            .map(|v| (v - mean) * (v - mean))
                            .sum::<f64>()
                            .sqrt();
                        total +=
                            spread * decay * (1.0 - decay).powi((trajectory - window - k) as i32);
                    }
                    total as f32
                })
                .collect()
        })
        .collect()
}

pub struct Tdds;

impl Scorer for Tdds {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "tdds",
            env!("CARGO_PKG_VERSION"),
            "temporal dual-depth scoring: spread of the prediction's epoch-to-epoch KL change within windows, decayed sum over windows (Zhang et al. 2024)",
        )
        .param("window", ParamValue::Int(10), "epochs per window J (the authors' default 10); clipped to the trajectory")
        .param("trajectory", ParamValue::Int(0), "epochs T used, from the first; 0: all the proxy's")
        .param("decay", ParamValue::Float(0.9), "β of the exponential weights (the authors' 0.9)")
        .input("dynamics/batch/logits")
        .high_is_hard(true)
        .budget_independent()
        .score_meaning("its prediction changed unevenly over training: informative, keep")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let logits = records(request, "dynamics/batch/logits")?;
        let trajectory = match request.int("trajectory")? {
            0 => logits.records,
            t if t >= 2 && (t as usize) <= logits.records => t as usize,
            t => {
                return Err(PluginError::new(format!(
                    "trajectory = {t} must be in 2..={} (the proxy's epochs) or 0",
                    logits.records
                )))
            }
        };
        let window = request.int("window")?;
        if window < 2 {
            return Err(PluginError::new(format!(
                "window = {window} must be at least 2"
            )));
        }
        let decay = request.float("decay")?;
        if !(decay > 0.0 && decay < 1.0) {
            return Err(PluginError::new(format!(
                "decay = {decay} must be in (0, 1)"
            )));
        }
        let window = (window as usize).min(trajectory);
        Ok(Selection::scores(mean_over_runs(&tdds(
            &logits, trajectory, window, decay,
        ))))
    }
}

export_plugins! {
    scorers: [Tdds],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_hand_computed_window() {
        // One example, 2 classes, 3 epochs, one window of 3 (two changes).
        // Probabilities (via logits ln p): (0.5, 0.5) → (0.8, 0.2) → (0.8, 0.2).
        let logits = vec![
            0.5f32.ln(),
            0.5f32.ln(),
            0.8f32.ln(),
            0.2f32.ln(),
            0.8f32.ln(),
            0.2f32.ln(),
        ];
        let r = Records {
            values: logits,
            runs: 1,
            records: 3,
            n: 1,
            width: 2,
        };
        let d1 = 0.8 * (0.8f64 / 0.5).ln().abs() + 0.2 * (0.2f64 / 0.5).ln().abs();
        let d2 = 0.0;
        let mean = (d1 + d2) / 2.0;
        let spread = ((d1 - mean).powi(2) + (d2 - mean).powi(2)).sqrt();
        let expected = spread * 0.9; // one window: β (1 − β)^0
        let got = tdds(&r, 3, 3, 0.9)[0][0] as f64;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }
}
