//! Reports: the accuracy table of a set of results (rows: method — with its parameters and
//! policy when one method appears with several — and keep; columns: α; cells: mean test
//! accuracy over seeds, with the spread when there are several). Only results of one
//! configuration are averaged together (the `config` key of each result, the cell key
//! without its seed).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::experiment::CellResult;

/// A Markdown table of test accuracy (%) by method, keep and α.
pub fn accuracy_table(results: &[CellResult]) -> String {
    let mut alphas: Vec<f32> = results.iter().map(|r| r.alpha).collect();
    alphas.sort_by(|a, b| a.total_cmp(b));
    alphas.dedup();
    // A method with several parameter sets or policies gets one row per set.
    let variant = |r: &CellResult| format!("{} {}", r.params, r.policy);
    let mut variants: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    for r in results {
        variants.entry(&r.method).or_default().insert(variant(r));
    }
    let label = |r: &CellResult| {
        if variants[r.method.as_str()].len() > 1 {
            format!("{} {} {}", r.method, r.params, r.policy)
        } else {
            r.method.clone()
        }
    };
    // (label, keep in 1/10000 for ordering) -> alpha index -> configuration -> accuracies
    type Cells = BTreeMap<usize, BTreeMap<String, Vec<f64>>>;
    let mut rows: BTreeMap<(String, i64), Cells> = BTreeMap::new();
    for r in results {
        let a = alphas.iter().position(|&x| x == r.alpha).unwrap_or(0);
        let keep = (r.keep as f64 * 10_000.0).round() as i64;
        // Results written before `config` existed stand alone.
        let config = if r.config.is_empty() {
            r.key.clone()
        } else {
            r.config.clone()
        };
        rows.entry((label(r), keep))
            .or_default()
            .entry(a)
            .or_default()
            .entry(config)
            .or_default()
            .push(r.test_accuracy * 100.0);
    }
    let mut out = String::new();
    let _ = write!(out, "| method | keep |");
    for a in &alphas {
        let _ = write!(out, " α = {a} |");
    }
    out.push('\n');
    let _ = write!(out, "|---|---:|");
    for _ in &alphas {
        out.push_str("---:|");
    }
    out.push('\n');
    for ((method, keep), cells) in &rows {
        let _ = write!(out, "| {method} | {:.2} |", *keep as f64 / 10_000.0);
        for a in 0..alphas.len() {
            let Some(configs) = cells.get(&a) else {
                out.push_str(" - |");
                continue;
            };
            let shown: Vec<String> = configs
                .values()
                .map(|v| {
                    if v.len() == 1 {
                        format!("{:.2}", v[0])
                    } else {
                        let mean = v.iter().sum::<f64>() / v.len() as f64;
                        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
                            / (v.len() - 1) as f64;
                        format!("{mean:.2} ± {:.2} (n={})", var.sqrt(), v.len())
                    }
                })
                .collect();
            let _ = write!(out, " {} |", shown.join(" / "));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(method: &str, keep: f32, alpha: f32, seed: u64, acc: f64) -> CellResult {
        CellResult {
            experiment: "e".into(),
            method: method.into(),
            params: serde_json::json!({}),
            policy: "hardest".into(),
            keep,
            alpha,
            temperature: 4.0,
            teacher: None,
            seed,
            kept: 1,
            train_size: 10,
            test_accuracy: acc,
            teacher_test_accuracy: None,
            seconds: 0.0,
            indices: String::new(),
            student: serde_json::json!({}),
            key: format!("{method}{keep}{alpha}{seed}"),
            config: format!("{method}{keep}{alpha}"),
        }
    }

    #[test]
    fn table_groups_and_averages() {
        let t = accuracy_table(&[
            cell("random", 0.1, 0.0, 0, 0.5),
            cell("random", 0.1, 0.0, 1, 0.7),
            cell("random", 0.1, 0.5, 0, 0.8),
        ]);
        assert!(
            t.contains("| random | 0.10 | 60.00 ± 14.14 (n=2) | 80.00 |"),
            "{t}"
        );
    }

    #[test]
    fn results_of_other_configurations_are_not_averaged_together() {
        // One seed run with two student settings: two configurations, never "n=2".
        let mut other = cell("random", 0.1, 0.0, 0, 0.9);
        other.config = "another student".into();
        let t = accuracy_table(&[cell("random", 0.1, 0.0, 0, 0.5), other]);
        assert!(t.contains("| random | 0.10 | 90.00 / 50.00 |"), "{t}");
        assert!(!t.contains("n=2"), "{t}");
    }
}
