//! kdprune pruning methods `entropy`, `least-confidence` and `margin` (the uncertainty scores
//! of Coleman et al. 2020, "Selection via Proxy", as DeepCore's `Uncertainty` computes them):
//! from the predicted probabilities `p` of a trained model,
//! - entropy `−Σ p log p` (high: uncertain, hard),
//! - least confidence `1 − max p` (high: hard),
//! - margin `p₁ − p₂`, the two largest probabilities (low: hard).
//!
//! `source = "proxy"` (default): the proxy after training, `dynamics/pass/logits` at the last
//! pass record (the end of training), scored per run and averaged over runs.
//! `source = "teacher"`: the teacher's probabilities (`soft_labels`). Only the chosen source is
//! computed (`inputs_for`): no proxy is trained for `source = "teacher"`.

use kdprune_plugin_api::{
    export_plugins,
    records::{mean_over_runs, records, softmax},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection, INPUT_SOFT_LABELS,
};

/// One uncertainty score of a probability row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Entropy,
    LeastConfidence,
    Margin,
}

impl Kind {
    pub fn score(self, p: &[f32]) -> f32 {
        match self {
            Kind::Entropy => -p
                .iter()
                .map(|&q| if q > 0.0 { q * q.ln() } else { 0.0 })
                .sum::<f32>(),
            Kind::LeastConfidence => 1.0 - p.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            Kind::Margin => {
                let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
                for &q in p {
                    if q > first {
                        second = first;
                        first = q;
                    } else if q > second {
                        second = q;
                    }
                }
                first - second
            }
        }
    }
}

fn info(name: &str, kind: Kind) -> PluginInfo {
    let (what, meaning) = match kind {
        Kind::Entropy => (
            "entropy -sum p log p",
            "a spread-out prediction: uncertain, hard",
        ),
        Kind::LeastConfidence => (
            "least confidence 1 - max p",
            "a low top probability: uncertain, hard",
        ),
        Kind::Margin => (
            "margin p1 - p2 of the two largest probabilities",
            "low margin: uncertain, hard; high: easy",
        ),
    };
    PluginInfo::pruning_method(
        name,
        env!("CARGO_PKG_VERSION"),
        &format!("{what} of the trained proxy's (or the teacher's) probabilities (Coleman et al. 2020)"),
    )
    .param(
        "source",
        ParamValue::Text("proxy".into()),
        "\"proxy\": the proxy at the end of training (mean over runs); \"teacher\": the teacher's probabilities",
    )
    .optional_input("dynamics/pass/logits")
    .optional_input(INPUT_SOFT_LABELS)
    .high_is_hard(kind != Kind::Margin)
    .budget_independent()
    .score_meaning(meaning)
}

/// Scores per example: of each run's last pass record of `logits`, averaged; or of the
/// teacher's probabilities.
pub fn uncertainty(request: &ScoreRequest<'_>, kind: Kind) -> Result<Vec<f32>, PluginError> {
    let n = request.train.len();
    let c = request.train.num_classes as usize;
    match request.text("source")? {
        "teacher" => {
            let soft = request.input(INPUT_SOFT_LABELS).ok_or_else(|| {
                PluginError::new("source = \"teacher\" needs a [teacher] in the manifest")
            })?;
            let p = soft.f32()?;
            if p.len() != n * c {
                return Err(PluginError::new(format!(
                    "soft labels hold {} values for [{n}, {c}]",
                    p.len()
                )));
            }
            Ok(p.chunks_exact(c).map(|row| kind.score(row)).collect())
        }
        "proxy" => {
            let logits = records(request, "dynamics/pass/logits")?;
            let last = logits.records - 1;
            let per_run: Vec<Vec<f32>> = (0..logits.runs)
                .map(|r| {
                    logits
                        .at(r, last)
                        .chunks_exact(logits.width)
                        .map(|row| kind.score(&softmax(row)))
                        .collect()
                })
                .collect();
            Ok(mean_over_runs(&per_run))
        }
        other => Err(PluginError::new(format!(
            "source = {other:?}: use \"proxy\" or \"teacher\""
        ))),
    }
}

macro_rules! uncertainty_plugin {
    ($ty:ident, $name:literal, $kind:expr) => {
        pub struct $ty;

        impl Scorer for $ty {
            fn info() -> PluginInfo {
                info($name, $kind)
            }

            fn inputs_for(
                params: &kdprune_plugin_api::Params<'_>,
            ) -> Option<Result<Vec<kdprune_plugin_api::InputSpec>, PluginError>> {
                Some(Ok(match params.text("source") {
                    Some("teacher") => vec![kdprune_plugin_api::required(INPUT_SOFT_LABELS)],
                    _ => vec![kdprune_plugin_api::required("dynamics/pass/logits")],
                }))
            }

            fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
                uncertainty(request, $kind).map(Selection::scores)
            }
        }
    };
}

uncertainty_plugin!(Entropy, "entropy", Kind::Entropy);
uncertainty_plugin!(LeastConfidence, "least-confidence", Kind::LeastConfidence);
uncertainty_plugin!(Margin, "margin", Kind::Margin);

export_plugins! {
    scorers: [Entropy, LeastConfidence, Margin],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_of_known_probabilities() {
        let p = [0.5f32, 0.25, 0.25];
        let h = -(0.5f32 * 0.5f32.ln() + 2.0 * 0.25 * 0.25f32.ln());
        assert!((Kind::Entropy.score(&p) - h).abs() < 1e-6);
        assert_eq!(Kind::LeastConfidence.score(&p), 0.5);
        assert_eq!(Kind::Margin.score(&p), 0.25);
        assert_eq!(Kind::Margin.score(&[0.1, 0.6, 0.3]), 0.3);
        assert_eq!(Kind::Entropy.score(&[1.0, 0.0]), 0.0);
    }
}
