//! Reports: the accuracy table of a set of results (rows: method and keep; columns: α;
//! cells: mean test accuracy over seeds, with the spread when there are several).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::experiment::CellResult;

/// A Markdown table of test accuracy (%) by method, keep and α.
pub fn accuracy_table(results: &[CellResult]) -> String {
    let mut alphas: Vec<f32> = results.iter().map(|r| r.alpha).collect();
    alphas.sort_by(|a, b| a.total_cmp(b));
    alphas.dedup();
    // (method, keep in per-mille for ordering) -> alpha index -> accuracies
    let mut rows: BTreeMap<(String, i64), BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    for r in results {
        let a = alphas.iter().position(|&x| x == r.alpha).unwrap_or(0);
        let keep = (r.keep as f64 * 10_000.0).round() as i64;
        rows.entry((r.method.clone(), keep))
            .or_default()
            .entry(a)
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
            match cells.get(&a) {
                None => out.push_str(" - |"),
                Some(v) if v.len() == 1 => {
                    let _ = write!(out, " {:.2} |", v[0]);
                }
                Some(v) => {
                    let mean = v.iter().sum::<f64>() / v.len() as f64;
                    let var =
                        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
                    let _ = write!(out, " {mean:.2} ± {:.2} (n={}) |", var.sqrt(), v.len());
                }
            }
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
}
