//! Every default of the manifest, in one place: the checker reads these constants, and
//! [`DOCUMENTED`] lists how docs/manifest.md writes each one (a test holds the document to
//! them, so a changed default cannot leave the docs behind).

pub const SEEDS: [u64; 1] = [0];
pub const ALPHAS: [f32; 1] = [0.0];
pub const TEMPERATURE: f32 = 4.0;
/// `"auto"`'s candidates: the grid of docs/results.md's sweeps, where the best α of every
/// cell lay.
pub const AUTO_CANDIDATES: [f32; 5] = [0.0, 0.25, 0.5, 0.75, 0.9];
pub const AUTO_HOLDOUT: f32 = 0.2;

pub const TEACHER_BATCH_SIZE: usize = 256;
pub const TEACHER_PROVIDER: crate::teacher::spec::Provider = crate::teacher::spec::Provider::Cpu;
pub const TEACHER_OUTPUT_KIND: crate::teacher::spec::OutputKind =
    crate::teacher::spec::OutputKind::Auto;
pub const TEACHER_LAYOUT: crate::teacher::spec::Layout = crate::teacher::spec::Layout::Flat;
pub const TRAINED_TEACHER_SEED: u64 = 0;

pub const STUDENT_BATCH_SIZE: usize = 128;
pub const SGD_MOMENTUM: f32 = 0.9;
pub const SGD_NESTEROV: bool = false;
pub const ADAMW_BETAS: [f32; 2] = [0.9, 0.999];
pub const WEIGHT_DECAY: f32 = 5e-4;
pub const STEP_GAMMA: f32 = 0.1;
pub const WARMUP_EPOCHS: usize = 0;

pub const DYNAMICS_RUNS: usize = 1;
pub const DYNAMICS_SEED: u64 = 0;

/// How a default is written in docs/manifest.md's tables.
#[derive(Debug, Clone, Copy)]
pub enum Written {
    /// A number (compared as a number: `5e-4` is `0.0005`).
    Number(f64),
    /// A list of numbers, `[a, b]`.
    Numbers(&'static [f64]),
    /// A string choice, written `` `"cpu"` ``.
    Word(&'static str),
    /// Several values of one row, written `a, b` (e.g. `momentum`, `nesterov`).
    Pair(f64, bool),
}

/// (section heading as in the docs, field cell, the default): every documented default.
pub const DOCUMENTED: &[(&str, &str, Written)] = &[
    ("Top level", "`seeds`", Written::Numbers(&[SEEDS[0] as f64])),
    (
        "`[distillation]`",
        "`alphas`",
        Written::Numbers(&[ALPHAS[0] as f64]),
    ),
    (
        "`[distillation]`",
        "`temperature`",
        Written::Number(TEMPERATURE as f64),
    ),
    (
        "`[distillation]`",
        "`auto.candidates`",
        Written::Numbers(&[
            AUTO_CANDIDATES[0] as f64,
            AUTO_CANDIDATES[1] as f64,
            AUTO_CANDIDATES[2] as f64,
            AUTO_CANDIDATES[3] as f64,
            AUTO_CANDIDATES[4] as f64,
        ]),
    ),
    (
        "`[distillation]`",
        "`auto.holdout`",
        Written::Number(AUTO_HOLDOUT as f64),
    ),
    ("`[teacher]`", "`output_kind`", Written::Word("auto")),
    ("`[teacher]`", "`provider`", Written::Word("cpu")),
    (
        "`[teacher]`",
        "`batch_size`",
        Written::Number(TEACHER_BATCH_SIZE as f64),
    ),
    (
        "`[student]`",
        "`batch_size`",
        Written::Number(STUDENT_BATCH_SIZE as f64),
    ),
    ("`[student]`", "`optimizer`", Written::Word("sgd")),
    (
        "`[student]`",
        "`momentum`, `nesterov`",
        Written::Pair(SGD_MOMENTUM as f64, SGD_NESTEROV),
    ),
    (
        "`[student]`",
        "`betas`",
        Written::Numbers(&[ADAMW_BETAS[0] as f64, ADAMW_BETAS[1] as f64]),
    ),
    (
        "`[student]`",
        "`weight_decay`",
        Written::Number(WEIGHT_DECAY as f64),
    ),
    ("`[student]`", "`schedule`", Written::Word("cosine")),
    (
        "`[student]`",
        "`warmup_epochs`",
        Written::Number(WARMUP_EPOCHS as f64),
    ),
    (
        "`[dynamics]`",
        "`runs`",
        Written::Number(DYNAMICS_RUNS as f64),
    ),
    (
        "`[dynamics]`",
        "`seed`",
        Written::Number(DYNAMICS_SEED as f64),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `(section, field cell, default cell)` of every table row under a `##` heading.
    fn rows(doc: &str) -> Vec<(String, String, String)> {
        let mut section = String::new();
        let mut default_column = None;
        let mut out = Vec::new();
        for line in doc.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                section = h.to_string();
                default_column = None;
                continue;
            }
            let cells: Vec<&str> = line
                .trim()
                .strip_prefix('|')
                .and_then(|l| l.strip_suffix('|'))
                .map(|l| l.split('|').map(str::trim).collect())
                .unwrap_or_default();
            if cells.is_empty() {
                continue;
            }
            if cells[0] == "field" {
                default_column = cells.iter().position(|c| *c == "default");
                continue;
            }
            if let Some(d) = default_column {
                if let Some(value) = cells.get(d) {
                    out.push((section.clone(), cells[0].to_string(), value.to_string()));
                }
            }
        }
        out
    }

    fn numbers(cell: &str) -> Vec<f64> {
        cell.trim_matches(|c| c == '`' || c == '[' || c == ']')
            .split(',')
            .map(|v| v.trim().parse::<f64>().unwrap_or(f64::NAN))
            .collect()
    }

    /// Equal as the f32 the manifest holds (0.9 written is 0.9f32, not 0.9f64).
    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| *x as f32 == *y as f32)
    }

    #[test]
    fn docs_manifest_md_states_every_default_as_the_code_has_it() {
        let doc = include_str!("../../../docs/manifest.md");
        let rows = rows(doc);
        for (section, field, written) in DOCUMENTED {
            let (_, _, cell) = rows
                .iter()
                .find(|(s, f, _)| s.contains(section) && f == field)
                .unwrap_or_else(|| panic!("docs/manifest.md has no row {field} under {section}"));
            let holds = match written {
                Written::Number(v) => same(&numbers(cell), &[*v]),
                Written::Numbers(vs) => same(&numbers(cell), vs),
                Written::Word(w) => *cell == format!("`\"{w}\"`"),
                Written::Pair(v, b) => {
                    let (n, flag) = cell.split_once(',').unwrap_or((cell, ""));
                    same(&numbers(n), &[*v]) && flag.trim() == b.to_string()
                }
            };
            assert!(
                holds,
                "docs/manifest.md, {section} {field}: the docs say {cell:?}, the code {written:?}"
            );
        }
    }
}
