//! The report's findings: the paper's four questions answered from the results at hand —
//! (1) does distillation help at every keep, for every method; (2) with distillation, is
//! random pruning as good as the best score-based method; (3) does the best α grow as keep
//! shrinks; (4) at small keep, can a smaller teacher beat a larger one — and how `alpha =
//! "auto"` compares with the grid's best α. Each difference is tested against twice its
//! standard error ([`Verdict`]); a section whose results are missing is left out.

use std::fmt::Write;

use super::stats::{Group, Groups, Verdict};

const RANDOM: &str = "random";

/// The findings as Markdown (empty when the results answer none of the questions).
pub fn markdown(groups: &Groups) -> String {
    let sections = [
        distillation_helps(groups),
        random_against_scores(groups),
        best_alpha(groups),
        teacher_size(groups),
        auto_alpha(groups),
    ];
    let body: String = sections.into_iter().flatten().collect();
    if body.is_empty() {
        return body;
    }
    format!(
        "## Findings\n\nA difference is *within noise* when it is at most twice its standard error \
         (Welch, over seeds); \"best α\" is the fixed α > 0 of highest mean, so it is an optimistic \
         pick among those tried.\n\n{body}"
    )
}

fn teacher_names(groups: &Groups) -> Vec<String> {
    groups.teachers().into_iter().map(|(t, _)| t).collect()
}

fn kd_label(g: &Group) -> String {
    format!("{} (α {})", g.show(), g.alpha)
}

fn distillation_helps(groups: &Groups) -> Option<String> {
    let mut out = String::new();
    let mut tally = [0usize; 4];
    for teacher in teacher_names(groups) {
        let mut rows = String::new();
        for method in groups.methods() {
            for keep in groups.keeps() {
                let (Some(plain), Some(kd)) = (
                    groups.without_kd(&method, keep),
                    groups.best_kd(&method, keep, &teacher),
                ) else {
                    continue;
                };
                let verdict = Verdict::of(kd, plain);
                tally[verdict as usize] += 1;
                let _ = writeln!(
                    rows,
                    "| {method} | {keep:.2} | {} | {} | {:+.2} | {} |",
                    plain.show(),
                    kd_label(kd),
                    kd.mean() - plain.mean(),
                    verdict.word()
                );
            }
        }
        if !rows.is_empty() {
            let _ = write!(
                out,
                "Teacher {teacher}:\n\n| method | keep | no KD | best KD | gain | KD is |\n|---|---:|---:|---:|---:|---|\n{rows}\n"
            );
        }
    }
    if out.is_empty() {
        return None;
    }
    Some(format!(
        "### 1. Does distillation help at every keep, for every method?\n\nBest KD against no KD: \
         better in {} cells, within noise in {}, worse in {}{}.\n\n{out}",
        tally[Verdict::Better as usize],
        tally[Verdict::WithinNoise as usize],
        tally[Verdict::Worse as usize],
        match tally[Verdict::Untested as usize] {
            0 => String::new(),
            k => format!(", untested (one seed) in {k}"),
        }
    ))
}

/// The score-based method (not random) of highest mean at `keep`, by `pick`.
fn best_other<'g>(
    groups: &'g Groups,
    keep: f32,
    pick: impl Fn(&str) -> Option<&'g Group>,
) -> Option<&'g Group> {
    groups
        .methods()
        .iter()
        .filter(|m| m.as_str() != RANDOM)
        .filter_map(|m| pick(m))
        .filter(|g| g.keep == keep)
        .max_by(|a, b| a.mean().total_cmp(&b.mean()))
}

fn random_against_scores(groups: &Groups) -> Option<String> {
    if !groups.methods().iter().any(|m| m == RANDOM) || groups.methods().len() < 2 {
        return None;
    }
    let mut out = String::new();
    for teacher in teacher_names(groups) {
        let mut rows = String::new();
        for keep in groups.keeps().into_iter().filter(|&k| k < 1.0) {
            let (Some(random_kd), Some(other_kd)) = (
                groups.best_kd(RANDOM, keep, &teacher),
                best_other(groups, keep, |m| groups.best_kd(m, keep, &teacher)),
            ) else {
                continue;
            };
            let plain = groups.without_kd(RANDOM, keep);
            let other_plain = best_other(groups, keep, |m| groups.without_kd(m, keep));
            let _ = writeln!(
                rows,
                "| {keep:.2} | {} | {} {} | {:+.2} | {} | {} | {} |",
                kd_label(random_kd),
                other_kd.method,
                kd_label(other_kd),
                random_kd.mean() - other_kd.mean(),
                Verdict::of(random_kd, other_kd).word(),
                plain.map(|g| g.show()).unwrap_or_else(|| "-".into()),
                other_plain
                    .map(|g| format!("{} {}", g.method, g.show()))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        if !rows.is_empty() {
            let _ = write!(
                out,
                "Teacher {teacher}:\n\n| keep | random, best KD | best score-based, best KD | random − it | random is | random, no KD | best score-based, no KD |\n|---:|---:|---|---:|---|---:|---|\n{rows}\n"
            );
        }
    }
    (!out.is_empty()).then(|| {
        format!("### 2. With distillation, is random pruning as good as the best score-based method?\n\n{out}")
    })
}

fn best_alpha(groups: &Groups) -> Option<String> {
    let keeps = groups.keeps();
    let mut out = String::new();
    let mut shrinking = (0usize, 0usize);
    for teacher in teacher_names(groups) {
        let mut rows = String::new();
        for method in groups.methods() {
            let best: Vec<Option<&Group>> = keeps
                .iter()
                .map(|&k| groups.best_kd(&method, k, &teacher))
                .collect();
            if best.iter().flatten().count() < 2 {
                continue;
            }
            // The α (0 included) within noise of the best, shown as a range.
            let cells: Vec<String> = keeps
                .iter()
                .zip(&best)
                .map(|(&k, b)| match b {
                    None => "-".into(),
                    Some(b) => {
                        let close: Vec<f32> = groups
                            .groups
                            .iter()
                            .filter(|g| {
                                g.method == method
                                    && g.keep == k
                                    && !g.alpha.is_auto()
                                    && (g.teacher.as_deref() == Some(teacher.as_str())
                                        || g.teacher.is_none())
                                    && Verdict::of(g, b) == Verdict::WithinNoise
                            })
                            .map(|g| g.alpha.value())
                            .collect();
                        let lo = close.iter().copied().fold(b.alpha.value(), f32::min);
                        let hi = close.iter().copied().fold(b.alpha.value(), f32::max);
                        if lo == hi {
                            format!("{}", b.alpha)
                        } else {
                            format!("{} ({lo}–{hi})", b.alpha)
                        }
                    }
                })
                .collect();
            let values: Vec<f32> = best.iter().flatten().map(|g| g.alpha.value()).collect();
            // As keep grows (left to right), the best α should not grow.
            let holds = values.windows(2).all(|w| w[1] <= w[0]);
            shrinking.1 += 1;
            shrinking.0 += holds as usize;
            let _ = writeln!(
                rows,
                "| {method} | {} | {} |",
                cells.join(" | "),
                if holds { "yes" } else { "no" }
            );
        }
        if !rows.is_empty() {
            let header: Vec<String> = keeps.iter().map(|k| format!("keep {k:.2}")).collect();
            let _ = write!(
                out,
                "Teacher {teacher} (in brackets: the α within noise of the best, α = 0 included):\n\n| method | {} | never grows with keep |\n|---|{}---|\n{rows}\n",
                header.join(" | "),
                "---:|".repeat(keeps.len())
            );
        }
    }
    (!out.is_empty()).then(|| {
        format!(
            "### 3. Does the best α grow as keep shrinks?\n\nThe best α never grows with keep for {} of {} (method, teacher) pairs.\n\n{out}",
            shrinking.0, shrinking.1
        )
    })
}

fn teacher_size(groups: &Groups) -> Option<String> {
    let teachers = groups.teachers();
    if teachers.len() < 2 {
        return None;
    }
    let mut out = String::new();
    for method in groups.methods() {
        let mut rows = String::new();
        for keep in groups.keeps() {
            let best: Vec<Option<&Group>> = teachers
                .iter()
                .map(|(t, _)| groups.best_kd(&method, keep, t))
                .collect();
            if best.iter().flatten().count() < 2 {
                continue;
            }
            let winner = best
                .iter()
                .flatten()
                .max_by(|a, b| a.mean().total_cmp(&b.mean()))
                .copied();
            let largest = best[0];
            let verdict = match (winner, largest) {
                (Some(w), Some(l)) if w.teacher == l.teacher => "the largest".to_string(),
                (Some(w), Some(l)) => format!(
                    "{}, {} the largest",
                    w.teacher.as_deref().unwrap_or("-"),
                    match Verdict::of(w, l) {
                        Verdict::Better => "better than",
                        Verdict::WithinNoise => "within noise of",
                        Verdict::Worse => "worse than",
                        Verdict::Untested => "(one seed) above",
                    }
                ),
                _ => "-".into(),
            };
            let cells: Vec<String> = best
                .iter()
                .map(|b| b.map(kd_label).unwrap_or_else(|| "-".into()))
                .collect();
            let _ = writeln!(rows, "| {keep:.2} | {} | {verdict} |", cells.join(" | "));
        }
        if !rows.is_empty() {
            let header: Vec<String> = teachers
                .iter()
                .map(|(t, a)| match a {
                    Some(a) => format!("{t} ({a:.2} %)"),
                    None => t.clone(),
                })
                .collect();
            let _ = write!(
                out,
                "Method {method}, best KD per teacher (largest first):\n\n| keep | {} | best teacher |\n|---:|{}---|\n{rows}\n",
                header.join(" | "),
                "---:|".repeat(teachers.len())
            );
        }
    }
    (!out.is_empty())
        .then(|| format!("### 4. At small keep, can a smaller teacher beat a larger one?\n\n{out}"))
}

fn auto_alpha(groups: &Groups) -> Option<String> {
    let mut rows = String::new();
    let mut worst: f64 = f64::NEG_INFINITY;
    let mut count = 0;
    let mut close = 0;
    for teacher in teacher_names(groups) {
        for method in groups.methods() {
            for keep in groups.keeps() {
                let (Some(auto), Some(best)) = (
                    groups.auto(&method, keep, &teacher),
                    groups.best_fixed(&method, keep, &teacher),
                ) else {
                    continue;
                };
                let shortfall = best.mean() - auto.mean();
                worst = worst.max(shortfall);
                count += 1;
                if shortfall <= 0.5 {
                    close += 1;
                }
                let chosen: Vec<String> = auto.chosen.iter().map(|a| a.to_string()).collect();
                let _ = writeln!(
                    rows,
                    "| {teacher} | {method} | {keep:.2} | {} | {} | {} | {:+.2} | {} |",
                    chosen.join(", "),
                    auto.show(),
                    kd_label(best),
                    auto.mean() - best.mean(),
                    Verdict::of(auto, best).word()
                );
            }
        }
    }
    (count > 0).then(|| {
        format!(
            "### `alpha = \"auto\"` against the grid's best α\n\nThe best fixed α of each cell, α = 0 (no teacher) included, is known only after the whole grid has run on the test set; auto chose without it. Largest shortfall of auto below it: {:.2} points; within 0.5 points in {close} of {count} cells.\n\n| teacher | method | keep | α chosen (per seed) | auto | best fixed α | auto − best | auto is |\n|---|---|---:|---|---:|---:|---:|---|\n{rows}\n",
            worst.max(0.0)
        )
    })
}
