//! kdprune pruning method `moderate` (Xia et al. 2023, "Moderate Coreset: A Universal Method
//! of Data Selection for Real-world Data-efficient Deep Learning"): the distance of each
//! example's embedding to the coordinate-wise median of its class's embeddings. Its default
//! policy `moderate` keeps the examples whose distance is closest to the median distance
//! (the authors keep the band between the percentiles `50 ± 50·keep`).
//!
//! Reads `embeddings/proxy` `[N, H]` (default) or `embeddings/teacher` (`embedding =
//! "teacher"`).

use kdprune_plugin_api::{
    export_plugins, records::chosen_embedding, ParamValue, PluginError, PluginInfo, ScoreRequest,
    Scorer, Selection,
};

/// The median of `values` (the mean of the two middle ones for an even count, as NumPy).
fn median(values: &mut [f32]) -> f32 {
    values.sort_by(f32::total_cmp);
    let m = values.len() / 2;
    if values.len() % 2 == 1 {
        values[m]
    } else {
        (values[m - 1] + values[m]) / 2.0
    }
}

/// Distances `[N]` of `x` `[N, h]` to the coordinate-wise median of their class.
pub fn distance_to_class_median(x: &[f32], h: usize, labels: &[u32], classes: usize) -> Vec<f32> {
    let mut medians = vec![0f32; classes * h];
    for c in 0..classes {
        let members: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] as usize == c)
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut column = vec![0f32; members.len()];
        for d in 0..h {
            for (v, &i) in column.iter_mut().zip(&members) {
                *v = x[i * h + d];
            }
            medians[c * h + d] = median(&mut column);
        }
    }
    (0..labels.len())
        .map(|i| {
            let c = labels[i] as usize;
            x[i * h..(i + 1) * h]
                .iter()
                .zip(&medians[c * h..(c + 1) * h])
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
                .sqrt()
        })
        .collect()
}

pub struct Moderate;

impl Scorer for Moderate {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "moderate",
            env!("CARGO_PKG_VERSION"),
            "distance of the embedding to its class's median; kept around the median distance (Xia et al. 2023)",
        )
        .param(
            "embedding",
            ParamValue::Text("proxy".into()),
            "\"proxy\": the proxy's penultimate layer; \"teacher\": [teacher] embedding",
        )
        .optional_input("embeddings/proxy")
        .optional_input("embeddings/teacher")
        .high_is_hard(true)
        .budget_independent()
        .default_policy("moderate")
        .score_meaning("far from its class's median: atypical; the default policy keeps the middle of the range")
    }

    fn inputs_for(
        params: &kdprune_plugin_api::Params<'_>,
    ) -> Option<Result<Vec<kdprune_plugin_api::InputSpec>, PluginError>> {
        kdprune_plugin_api::records::embedding_inputs(params)
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let (x, h) = chosen_embedding(request)?;
        let train = request.train;
        Ok(Selection::scores(distance_to_class_median(
            &x,
            h,
            train.labels.as_slice(),
            train.num_classes as usize,
        )))
    }
}

export_plugins! {
    scorers: [Moderate],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_to_the_coordinate_wise_median() {
        // Class 0: (0,0), (2,0), (10,4) → median (2, 0); class 1: (1,1), (3,3) → median (2, 2).
        let x = [0.0, 0.0, 2.0, 0.0, 10.0, 4.0, 1.0, 1.0, 3.0, 3.0];
        let labels = [0, 0, 0, 1, 1];
        let d = distance_to_class_median(&x, 2, &labels, 2);
        let expected = [
            2.0,
            0.0,
            (64.0f32 + 16.0).sqrt(),
            2.0f32.sqrt(),
            2.0f32.sqrt(),
        ];
        for (a, b) in d.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{d:?}");
        }
    }
}
