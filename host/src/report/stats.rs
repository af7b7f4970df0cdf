//! Results gathered into groups of seeds: one group per (method variant, keep, α, teacher,
//! setup), with its mean, spread and the noise test the report's findings use.

use std::collections::BTreeMap;

use crate::results::CellResult;

/// The α of a group as the manifest named it: a number, or the `"auto"` rule.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub enum AlphaLabel {
    Fixed(f32),
    /// `alpha = "auto"`; the α its search chose for the group's first seed (each seed's in
    /// [`Group::chosen`]).
    Auto(f32),
}

impl AlphaLabel {
    pub fn of(r: &CellResult) -> Self {
        if r.alpha_rule.is_some() {
            AlphaLabel::Auto(r.alpha)
        } else {
            AlphaLabel::Fixed(r.alpha)
        }
    }
    pub fn value(self) -> f32 {
        match self {
            AlphaLabel::Fixed(a) | AlphaLabel::Auto(a) => a,
        }
    }
    pub fn is_auto(self) -> bool {
        matches!(self, AlphaLabel::Auto(_))
    }
    /// Sort order: numbers ascending, then auto.
    fn rank(self) -> (u8, i64) {
        match self {
            AlphaLabel::Fixed(a) => (0, (a as f64 * 1e6).round() as i64),
            AlphaLabel::Auto(_) => (1, 0),
        }
    }
}

impl std::fmt::Display for AlphaLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AlphaLabel::Fixed(a) => write!(f, "{a}"),
            AlphaLabel::Auto(_) => write!(f, "auto"),
        }
    }
}

/// The test accuracies (%) of the seeds of one configuration.
#[derive(Debug, Clone)]
pub struct Group {
    /// The method, with its policy unless `hardest`, its parameters when the results hold
    /// several variants,
    /// and the setup when they hold several students or data sets.
    pub method: String,
    pub keep: f32,
    pub alpha: AlphaLabel,
    /// The teacher distilled from; `None` at α = 0.
    pub teacher: Option<String>,
    /// The teacher's test accuracy (%), when there is one.
    pub teacher_accuracy: Option<f64>,
    /// Test accuracy (%) per seed, in file order.
    pub accuracies: Vec<f64>,
    /// The α each seed trained with, in the same order (for `"auto"`, its search's choice).
    pub chosen: Vec<f32>,
}

/// Whether a result belongs in a report: not when `"auto"` chose it by an older rule than
/// [`crate::train::alpha_search::RULE`] (it would stand beside the current one as a second
/// "auto").
pub fn current(r: &CellResult) -> bool {
    r.alpha_rule
        .as_deref()
        .is_none_or(|rule| rule == crate::train::alpha_search::RULE)
}

impl Group {
    pub fn n(&self) -> usize {
        self.accuracies.len()
    }
    pub fn mean(&self) -> f64 {
        self.accuracies.iter().sum::<f64>() / self.n().max(1) as f64
    }
    /// Sample standard deviation; 0 for one seed.
    pub fn std(&self) -> f64 {
        let n = self.n();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        (self.accuracies.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    }
    /// `mean` or `mean ± std (n=k)`.
    pub fn show(&self) -> String {
        if self.n() == 1 {
            format!("{:.2}", self.mean())
        } else {
            format!("{:.2} ± {:.2}", self.mean(), self.std())
        }
    }
}

/// How two groups compare, by the difference of their means against twice its standard
/// error (Welch): a difference inside that band is reported as noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Better,
    Worse,
    WithinNoise,
    /// One seed on a side: no spread to test against.
    Untested,
}

impl Verdict {
    pub fn of(a: &Group, b: &Group) -> Self {
        if a.n() < 2 || b.n() < 2 {
            return Verdict::Untested;
        }
        let d = a.mean() - b.mean();
        let se = (a.std().powi(2) / a.n() as f64 + b.std().powi(2) / b.n() as f64).sqrt();
        if d.abs() <= 2.0 * se {
            Verdict::WithinNoise
        } else if d > 0.0 {
            Verdict::Better
        } else {
            Verdict::Worse
        }
    }
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::WithinNoise => "within noise",
            Verdict::Untested => "one seed",
        }
    }
}

/// Every group of a set of results, in a stable order (method, keep, teacher, α).
#[derive(Debug, Clone)]
pub struct Groups {
    pub groups: Vec<Group>,
}

impl Groups {
    pub fn new(results: &[CellResult]) -> Self {
        // Variants (parameters, policy) and setups (student, data size, τ) get a label only
        // when a method appears with more than one.
        let variant = |r: &CellResult| format!("{} {}", r.params, r.policy);
        let setup = |r: &CellResult| format!("{} {}", r.student, r.train_size);
        let mut variants: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut setups: Vec<String> = Vec::new();
        let results: Vec<&CellResult> = results.iter().filter(|r| current(r)).collect();
        for r in &results {
            let v = variants.entry(&r.method).or_default();
            if !v.contains(&variant(r)) {
                v.push(variant(r));
            }
            if !setups.contains(&setup(r)) {
                setups.push(setup(r));
            }
        }
        let label = |r: &CellResult| {
            // The policy always, unless it is the usual `hardest` (el2n under CCS is not el2n);
            // the parameters too when the method has several variants.
            let mut label = if r.policy == "hardest" {
                r.method.clone()
            } else {
                format!("{} ({})", r.method, r.policy)
            };
            if variants[r.method.as_str()].len() > 1 {
                label = format!("{} {} {}", r.method, r.params, r.policy);
            }
            if setups.len() > 1 {
                let k = setups.iter().position(|s| *s == setup(r)).unwrap_or(0);
                label = format!("{label} (setup {})", k + 1);
            }
            label
        };
        type Key = (String, i64, Option<String>, (u8, i64));
        // Seeds of one configuration only (the `config` key; results from before it existed
        // stand alone).
        let mut by: BTreeMap<(Key, String), Group> = BTreeMap::new();
        for r in results {
            let alpha = AlphaLabel::of(r);
            let teacher = r
                .teacher
                .clone()
                .filter(|_| r.alpha > 0.0 || alpha.is_auto());
            let key = (
                label(r),
                (r.keep as f64 * 1e4).round() as i64,
                teacher.clone(),
                alpha.rank(),
            );
            let config = if r.config.is_empty() {
                r.key.clone()
            } else {
                r.config.clone()
            };
            by.entry((key.clone(), config.clone()))
                .or_insert_with(|| Group {
                    method: label(r),
                    keep: r.keep,
                    alpha,
                    teacher_accuracy: teacher
                        .as_ref()
                        .and(r.teacher_test_accuracy.map(|a| a * 100.0)),
                    teacher,
                    accuracies: Vec::new(),
                    chosen: Vec::new(),
                });
            let group = by.get_mut(&(key, config)).expect("inserted above");
            group.accuracies.push(r.test_accuracy * 100.0);
            group.chosen.push(r.alpha);
        }
        // Configurations that still look alike (same label, keep, teacher, α) are told apart
        // by the start of their key.
        let mut seen: BTreeMap<Key, usize> = BTreeMap::new();
        for (key, _) in by.keys() {
            *seen.entry(key.clone()).or_default() += 1;
        }
        for ((key, config), group) in by.iter_mut() {
            if seen[key] > 1 {
                group.method = format!("{} [{}]", group.method, config.get(..6).unwrap_or(config));
            }
        }
        Groups {
            groups: by.into_values().collect(),
        }
    }

    pub fn methods(&self) -> Vec<String> {
        let mut m: Vec<String> = self.groups.iter().map(|g| g.method.clone()).collect();
        m.dedup();
        m
    }

    pub fn keeps(&self) -> Vec<f32> {
        let mut k: Vec<f32> = self.groups.iter().map(|g| g.keep).collect();
        k.sort_by(|a, b| a.total_cmp(b));
        k.dedup();
        k
    }

    /// Teachers with their test accuracy (%), largest capacity (accuracy) first.
    pub fn teachers(&self) -> Vec<(String, Option<f64>)> {
        let mut t: Vec<(String, Option<f64>)> = Vec::new();
        for g in &self.groups {
            if let Some(name) = &g.teacher {
                if !t.iter().any(|(n, _)| n == name) {
                    t.push((name.clone(), g.teacher_accuracy));
                }
            }
        }
        t.sort_by(|a, b| b.1.unwrap_or(0.0).total_cmp(&a.1.unwrap_or(0.0)));
        t
    }

    /// Every α label, numbers ascending, then auto.
    pub fn alphas(&self) -> Vec<AlphaLabel> {
        let mut a: Vec<AlphaLabel> = Vec::new();
        for g in &self.groups {
            let label = match g.alpha {
                AlphaLabel::Auto(_) => AlphaLabel::Auto(0.0),
                fixed => fixed,
            };
            if !a.contains(&label) {
                a.push(label);
            }
        }
        a.sort_by_key(|l| l.rank());
        a
    }

    pub fn find(
        &self,
        method: &str,
        keep: f32,
        teacher: Option<&str>,
        alpha: AlphaLabel,
    ) -> Option<&Group> {
        self.groups.iter().find(|g| {
            g.method == method
                && g.keep == keep
                && g.teacher.as_deref() == teacher
                && g.alpha.rank() == alpha.rank()
        })
    }

    /// The group trained without a teacher (α = 0).
    pub fn without_kd(&self, method: &str, keep: f32) -> Option<&Group> {
        self.find(method, keep, None, AlphaLabel::Fixed(0.0))
    }

    /// The fixed α > 0 with the highest mean for (method, keep, teacher).
    pub fn best_kd(&self, method: &str, keep: f32, teacher: &str) -> Option<&Group> {
        self.groups
            .iter()
            .filter(|g| {
                g.method == method
                    && g.keep == keep
                    && g.teacher.as_deref() == Some(teacher)
                    && !g.alpha.is_auto()
            })
            .max_by(|a, b| a.mean().total_cmp(&b.mean()))
    }

    /// The `alpha = "auto"` group of (method, keep, teacher).
    pub fn auto_kd(&self, method: &str, keep: f32, teacher: &str) -> Option<&Group> {
        self.find(method, keep, Some(teacher), AlphaLabel::Auto(0.0))
    }

    /// The best group of fixed α of (method, keep) for `teacher`, α = 0 (no teacher) included:
    /// what `"auto"` is measured against.
    pub fn best_fixed(&self, method: &str, keep: f32, teacher: &str) -> Option<&Group> {
        self.groups
            .iter()
            .filter(|g| {
                g.method == method
                    && g.keep == keep
                    && !g.alpha.is_auto()
                    && (g.teacher.as_deref() == Some(teacher) || g.alpha.value() == 0.0)
            })
            .max_by(|a, b| a.mean().total_cmp(&b.mean()))
    }

    /// The `"auto"` group of (method, keep, teacher).
    pub fn auto(&self, method: &str, keep: f32, teacher: &str) -> Option<&Group> {
        self.groups.iter().find(|g| {
            g.method == method
                && g.keep == keep
                && g.teacher.as_deref() == Some(teacher)
                && g.alpha.is_auto()
        })
    }
}
