//! Reports of a set of results: the accuracy table (Markdown), the findings on the paper's
//! four questions, and plots (SVG, drawn by `plotters`), gathered in `report.md` and a
//! self-contained `report.html`. Only results of one setup are averaged together: seeds of
//! one (method variant, keep, α, teacher) group.

mod findings;
mod html;
mod plots;
pub mod stats;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::results::CellResult;
pub use stats::{AlphaLabel, Group, Groups, Verdict};

/// A Markdown table of test accuracy (%) by method and keep (rows) and α and teacher
/// (columns: α = 0 once, then one per α > 0 and teacher); cells show the mean over seeds and,
/// for several seeds, the spread.
pub fn accuracy_table(results: &[CellResult]) -> String {
    let groups = Groups::new(results);
    let teachers = groups.teachers();
    let several = teachers.len() > 1;
    let mut columns: Vec<(AlphaLabel, Option<String>)> = Vec::new();
    // Results that distil without naming their teacher (written by hand, say) get a column.
    let unnamed = groups
        .groups
        .iter()
        .any(|g| g.alpha.value() > 0.0 && g.teacher.is_none());
    for alpha in groups.alphas() {
        if alpha == AlphaLabel::Fixed(0.0) {
            columns.push((alpha, None));
        } else {
            if unnamed {
                columns.push((alpha, None));
            }
            columns.extend(teachers.iter().map(|(t, _)| (alpha, Some(t.clone()))));
        }
    }
    let mut out = String::new();
    let _ = write!(out, "| method | keep |");
    for (alpha, teacher) in &columns {
        match teacher {
            Some(t) if several => {
                let _ = write!(out, " {t} α = {alpha} |");
            }
            _ => {
                let _ = write!(out, " α = {alpha} |");
            }
        }
    }
    out.push('\n');
    let _ = write!(out, "|---|---:|");
    for _ in &columns {
        out.push_str("---:|");
    }
    out.push('\n');
    let seeds_differ = groups.groups.iter().any(|g| g.n() > 1);
    for method in groups.methods() {
        for keep in groups.keeps() {
            if !groups
                .groups
                .iter()
                .any(|g| g.method == method && g.keep == keep)
            {
                continue;
            }
            let _ = write!(out, "| {method} | {keep:.2} |");
            for (alpha, teacher) in &columns {
                match groups.find(&method, keep, teacher.as_deref(), *alpha) {
                    Some(g) if seeds_differ && g.n() > 1 => {
                        let _ = write!(out, " {} (n={}) |", g.show(), g.n());
                    }
                    Some(g) => {
                        let _ = write!(out, " {} |", g.show());
                    }
                    None => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
    }
    out
}

/// The files [`write`] made.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub html: PathBuf,
    /// The Markdown, as written.
    pub text: String,
}

/// What writing a report can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {message}")]
    Io {
        path: std::path::PathBuf,
        message: String,
    },
}

/// Writes `report.md` and `report.html` for `results` into `dir` (each through a temporary
/// file and a rename, so a failed write leaves the previous report whole). `title` heads both.
pub fn write(dir: &Path, title: &str, results: &[CellResult]) -> Result<ReportFiles, ReportError> {
    let groups = Groups::new(results);
    let mut md = format!("# {title}\n\nTest accuracy (%), mean ± standard deviation over seeds.");
    let teachers = groups.teachers();
    if !teachers.is_empty() {
        let shown: Vec<String> = teachers
            .iter()
            .map(|(t, a)| match a {
                Some(a) => format!("{t} {a:.2} %"),
                None => t.clone(),
            })
            .collect();
        let _ = write!(md, " Teachers (test accuracy): {}.", shown.join(", "));
    }
    let older = results.iter().filter(|r| !stats::current(r)).count();
    if older > 0 {
        let _ = write!(
            md,
            " Left out: {older} results of an older `alpha = \"auto\"` rule than {}.",
            crate::train::alpha_search::RULE
        );
    }
    let head = md.clone();
    let mut body = accuracy_table(results);
    let findings = findings::markdown(&groups);
    if !findings.is_empty() {
        let _ = write!(body, "\n{findings}");
    }
    let _ = write!(md, "\n\n{body}");
    let (figures, left_out) = plots::all(&groups);
    let html = html::page(title, &head, &body, &figures, &left_out);
    let markdown = dir.join("report.md");
    let page = dir.join("report.html");
    replace(&markdown, md.as_bytes())?;
    replace(&page, html.as_bytes())?;
    Ok(ReportFiles {
        markdown,
        html: page,
        text: md,
    })
}

fn replace(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io = |e: std::io::Error| ReportError::Io {
        path: path.to_path_buf(),
        message: crate::io_message(&e),
    };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        io(e)
    })?;
    std::fs::rename(&tmp, path).map_err(io)
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
            policy_params: None,
            keep,
            alpha,
            alpha_rule: None,
            alpha_search: None,
            temperature: 4.0,
            teacher: None,
            seed,
            kept: 1,
            examples_seen: None,
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
        assert!(t.contains(" | 0.10 | 90.00 |"), "{t}");
        assert!(t.contains(" | 0.10 | 50.00 |"), "{t}");
        assert!(!t.contains("n=2"), "{t}");
    }

    fn kd(method: &str, keep: f32, alpha: f32, teacher: &str, seed: u64, acc: f64) -> CellResult {
        let mut c = cell(method, keep, alpha, seed, acc);
        c.teacher = Some(teacher.into());
        c.teacher_test_accuracy = Some(if teacher == "big" { 0.95 } else { 0.85 });
        c.key = format!("{method}{keep}{alpha}{teacher}{seed}");
        c.config = format!("{method}{keep}{alpha}{teacher}");
        c
    }

    /// Results of `alpha = "auto"` only (with α = 0), at three keeps, one teacher.
    pub(crate) fn auto_only() -> Vec<CellResult> {
        let mut results = Vec::new();
        for (k, keep) in [0.1f32, 0.3, 0.5].into_iter().enumerate() {
            for seed in 0..2 {
                results.push(cell("random", keep, 0.0, seed, 0.7 + 0.05 * k as f64));
                let mut auto = kd(
                    "random",
                    keep,
                    0.5 + 0.1 * k as f32,
                    "big",
                    seed,
                    0.75 + 0.05 * k as f64,
                );
                auto.alpha_rule = Some(crate::train::alpha_search::RULE.to_string());
                auto.key = format!("auto{keep}{seed}");
                auto.config = format!("auto{keep}");
                results.push(auto);
            }
        }
        results
    }

    #[test]
    fn auto_alpha_cells_are_drawn_and_a_plot_left_out_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path(), "auto", &auto_only()).unwrap();
        let html = std::fs::read_to_string(files.html).unwrap();
        assert_eq!(
            html.matches("<svg").count(),
            2,
            "accuracy and best α against keep"
        );
        assert!(html.contains("auto"), "the auto series is labelled");
        assert!(
            html.contains("Not drawn: accuracy against teacher capacity: it needs two teachers"),
            "{}",
            &html[html.find("Not drawn").unwrap_or(0)..]
        );
    }

    #[test]
    fn verdicts_test_the_difference_against_its_standard_error() {
        let groups = Groups::new(&[
            cell("a", 0.1, 0.0, 0, 0.80),
            cell("a", 0.1, 0.0, 1, 0.81),
            cell("a", 0.1, 0.0, 2, 0.82),
            cell("b", 0.1, 0.0, 0, 0.85),
            cell("b", 0.1, 0.0, 1, 0.86),
            cell("b", 0.1, 0.0, 2, 0.87),
            cell("c", 0.1, 0.0, 0, 0.79),
            cell("c", 0.1, 0.0, 1, 0.83),
            cell("c", 0.1, 0.0, 2, 0.81),
        ]);
        let a = groups.without_kd("a", 0.1).unwrap();
        let b = groups.without_kd("b", 0.1).unwrap();
        let c = groups.without_kd("c", 0.1).unwrap();
        assert!((a.mean() - 81.0).abs() < 1e-9 && (a.std() - 1.0).abs() < 1e-9);
        assert_eq!(Verdict::of(b, a), Verdict::Better);
        assert_eq!(Verdict::of(a, b), Verdict::Worse);
        assert_eq!(Verdict::of(a, c), Verdict::WithinNoise);
    }

    #[test]
    fn findings_answer_the_four_questions_from_the_results() {
        let mut results = Vec::new();
        for seed in 0..3 {
            let e = seed as f64 * 0.001;
            for (method, base) in [("random", 0.80), ("el2n", 0.60)] {
                results.push(cell(method, 0.1, 0.0, seed, base + e));
                results.push(cell(method, 0.5, 0.0, seed, base + 0.08 + e));
                // The best α is 0.9 at keep 0.1 and 0.5 at keep 0.5; the small teacher wins
                // at keep 0.1.
                results.push(kd(method, 0.1, 0.5, "big", seed, base + 0.02 + e));
                results.push(kd(method, 0.1, 0.9, "big", seed, base + 0.04 + e));
                results.push(kd(method, 0.5, 0.5, "big", seed, base + 0.10 + e));
                results.push(kd(method, 0.5, 0.9, "big", seed, base + 0.09 + e));
                results.push(kd(method, 0.1, 0.9, "small", seed, base + 0.05 + e));
            }
        }
        let md = findings::markdown(&Groups::new(&results));
        assert!(
            md.contains("better in 6 cells, within noise in 0, worse in 0"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 0.10 | 84.10 ± 0.10 (α 0.9) | el2n 64.10 ± 0.10 (α 0.9) | +20.00 | better |"
            ),
            "{md}"
        );
        assert!(md.contains("| random | 0.9 | 0.5 | yes |"), "{md}");
        assert!(md.contains("| 0.10 | 84.10 ± 0.10 (α 0.9) | 85.10 ± 0.10 (α 0.9) | small, better than the largest |"), "{md}");
    }
}
