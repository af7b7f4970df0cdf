//! `alpha = "auto"`: the distillation weight of one cell chosen on held-out examples. A
//! class-stratified random sample of the *whole* training set, as large as `holdout` of the
//! kept subset, is set aside; one student per candidate α is trained on the kept examples not
//! in it, with the cell's teacher and seed; the α whose student is most accurate on the sample
//! is the cell's α, and the cell's student is then trained on the whole kept subset with it.
//! No test example is looked at.
//!
//! The sample is drawn from the whole training set, not from the kept subset, because a kept
//! subset chosen by a score is a biased sample: a hard-first method keeps the examples the
//! teacher and a proxy get wrong, and on those a student that follows the teacher scores
//! badly against their labels, so a search inside the kept subset turned distillation off
//! exactly where it helps most (auto-v3, docs/results.md: 44 points below the best α for
//! forgetting at keep 0.05). Labels of the whole training set exist in data pruning — the
//! teacher was trained on them — and are used here only to choose among the candidates.

use ndarray::Axis;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::TrainError;
use super::fit::{OnlineTeacher, TrainSet};
use super::kd::{Alpha, Kd, Temperature};
use super::spec::StudentSpec;
use crate::select::Keep;

/// One α of the grid: a fixed weight, or `"auto"`, chosen per cell by the held-out [`search`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlphaChoice {
    Fixed(Alpha),
    Auto,
}

impl AlphaChoice {
    /// The weight of a fixed choice; `None` for `"auto"`, whose α each cell searches for.
    pub fn fixed(self) -> Option<Alpha> {
        match self {
            AlphaChoice::Fixed(a) => Some(a),
            AlphaChoice::Auto => None,
        }
    }
    /// Whether some cell of this choice distils (`"auto"` always reads the teacher).
    pub fn needs_teacher(self) -> bool {
        match self {
            AlphaChoice::Fixed(a) => a.needs_teacher(),
            AlphaChoice::Auto => true,
        }
    }
    /// The search's name for `"auto"` (written in results and the cell key), `None` for a
    /// number.
    pub fn rule(self) -> Option<&'static str> {
        match self {
            AlphaChoice::Fixed(_) => None,
            AlphaChoice::Auto => Some(RULE),
        }
    }
}

/// The name of the search in results and cell keys; a changed search gets a new name, so
/// students chosen by an older one are not reused.
pub const RULE: &str = "auto-v4";

/// How `"auto"` searches: `[distillation] auto = { candidates, holdout }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoSearch {
    /// The weights tried, ascending, without repeats.
    pub candidates: Vec<Alpha>,
    /// Size of the held-out sample as a share of the kept subset, in (0, 0.5].
    pub holdout: f32,
}

/// One candidate's outcome: written in the result so a reader sees why α was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub alpha: f32,
    /// Accuracy on the set-aside examples; `None` when its training diverged.
    pub holdout_accuracy: Option<f64>,
}

/// The search's answer.
#[derive(Debug, Clone)]
pub struct Choice {
    pub alpha: Alpha,
    /// One per candidate, in the candidates' order.
    pub trials: Vec<Trial>,
}

impl AutoSearch {
    /// Training work of a search relative to one student on the whole kept subset.
    pub fn relative_cost(&self) -> f64 {
        self.candidates.len() as f64 * (1.0 - self.holdout as f64)
    }

    /// How `kdprune check` describes the search.
    pub fn describe(&self) -> String {
        let shown: Vec<String> = self
            .candidates
            .iter()
            .map(|a| a.get().to_string())
            .collect();
        format!(
            "held-out search over [{}] on a stratified sample of the training set {} % the size of the kept subset",
            shown.join(", "),
            (self.holdout * 100.0).round()
        )
    }
}

/// A class-stratified random sample of `0..labels.len()` of about `size` positions: each class
/// gives `round(size · its count / N)`, drawn by `seed`. Ascending.
///
/// `labels`: `[N]`.
pub fn stratified_sample(labels: &[u32], size: usize, seed: u64) -> Vec<usize> {
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let n = labels.len().max(1) as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa1fa_5ea7);
    let mut out = Vec::with_capacity(size);
    for members in &mut by_class {
        members.shuffle(&mut rng);
        let take = ((size as f64 * members.len() as f64 / n).round() as usize).min(members.len());
        out.extend_from_slice(&members[..take]);
    }
    out.sort_unstable();
    out
}

/// The prior a tie between candidates falls back on: the kept-fraction rule fitted to
/// kdprune's sweeps, `clamp(1.2 − keep, 0.5, 0.9)` (the best α grows as keep shrinks).
fn prior(keep: Keep) -> f64 {
    (1.2 - keep.get() as f64).clamp(0.5, 0.9)
}

/// Runs the search for one cell. `full` is the whole training set (`[N, D]`, its `teacher`
/// `[N, C]` required) and `kept` the cell's kept positions in it; the students are trained
/// with `spec`, `temperature` and `seed` as the cell's own, and `online` when the cell distils
/// online. Errors other than divergence stop the search.
#[allow(clippy::too_many_arguments)]
pub fn search(
    spec: &StudentSpec,
    full: &TrainSet<'_>,
    kept: &[usize],
    search: &AutoSearch,
    temperature: Temperature,
    keep: Keep,
    seed: u64,
    mut online: Option<OnlineTeacher<'_>>,
) -> Result<Choice, TrainError> {
    let teacher = full
        .teacher
        .ok_or_else(|| TrainError::Shape("the α search needs the teacher's scores".into()))?;
    let size = (kept.len() as f64 * search.holdout as f64).round() as usize;
    let held = stratified_sample(full.y, size, seed);
    let mut is_held = vec![false; full.y.len()];
    for &i in &held {
        is_held[i] = true;
    }
    let fit: Vec<usize> = kept.iter().copied().filter(|&i| !is_held[i]).collect();
    if held.is_empty() || fit.is_empty() {
        return Err(TrainError::Shape(format!(
            "{} kept examples are too few for alpha = \"auto\"'s held-out search ([distillation] auto.holdout = {}); keep more, or give fixed alphas",
            kept.len(),
            search.holdout
        )));
    }
    let fit_x = full.x.select(Axis(0), &fit);
    let fit_y: Vec<u32> = fit.iter().map(|&i| full.y[i]).collect();
    let fit_teacher = teacher.select(Axis(0), &fit);
    let held_x = full.x.select(Axis(0), &held);
    let held_y: Vec<u32> = held.iter().map(|&i| full.y[i]).collect();
    let fit_set = TrainSet {
        x: fit_x.view(),
        sample_shape: full.sample_shape,
        y: &fit_y,
        teacher: Some(fit_teacher.view()),
        num_classes: full.num_classes,
    };
    let mut trials = Vec::with_capacity(search.candidates.len());
    for &alpha in &search.candidates {
        let kd = Kd { alpha, temperature };
        let label = format!("α search {}", alpha.get());
        let trained = super::fit::train_observed(
            spec,
            &fit_set,
            kd,
            seed,
            super::fit::lend(&mut online),
            None,
            &label,
        );
        let holdout_accuracy = match trained {
            Ok((mut model, _)) => Some(super::fit::evaluate(&mut model, held_x.view(), &held_y)),
            Err(TrainError::Diverged { .. }) => None,
            Err(e) => return Err(e),
        };
        trials.push(Trial {
            alpha: alpha.get(),
            holdout_accuracy,
        });
    }
    let chosen = best(&trials, prior(keep)).ok_or_else(|| {
        TrainError::Shape(
            "every candidate of alpha = \"auto\" diverged; lower [student] lr or give fixed alphas"
                .into(),
        )
    })?;
    Ok(Choice {
        alpha: search.candidates[chosen],
        trials,
    })
}

/// The trial with the best held-out accuracy; among equals, the one nearest `prior`.
fn best(trials: &[Trial], prior: f64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, t) in trials.iter().enumerate() {
        let Some(acc) = t.holdout_accuracy else {
            continue;
        };
        let better = match best {
            None => true,
            Some((j, b)) => {
                acc > b
                    || (acc == b
                        && (t.alpha as f64 - prior).abs() < (trials[j].alpha as f64 - prior).abs())
            }
        };
        if better {
            best = Some((i, acc));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::Rng;

    /// Three separable clusters in 2-D, `[150, 2]`, and their labels.
    fn clusters() -> (Array2<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let centres = [(-2.0f32, 0.0f32), (2.0, 0.0), (0.0, 2.5)];
        let mut x = Array2::zeros((150, 2));
        let mut y = Vec::new();
        for i in 0..150 {
            let c = i % 3;
            x[[i, 0]] = centres[c].0 + rng.gen_range(-0.8..0.8);
            x[[i, 1]] = centres[c].1 + rng.gen_range(-0.8..0.8);
            y.push(c as u32);
        }
        (x, y)
    }

    #[test]
    fn a_teacher_that_names_the_wrong_class_is_turned_off_and_the_trials_are_recorded() {
        let manifest = crate::manifest::parse(
            std::path::Path::new("/tmp/m.toml"),
            "output = \"out\"\n[data]\nformat = \"csv\"\ntrain = \"t.csv\"\nlabel = -1\nholdout = 0.2\n[student]\nhidden = [16]\nepochs = 15\nbatch_size = 16\nlr = 0.1\n[[prune]]\nmethod = \"random\"\nkeep = [0.5]\n",
        )
        .unwrap();
        let (x, y) = clusters();
        // Confidently wrong: every example's scores point at the next class.
        let mut liar = Array2::<f32>::zeros((150, 3));
        for (i, &label) in y.iter().enumerate() {
            liar[[i, (label as usize + 1) % 3]] = 8.0;
        }
        let set = TrainSet {
            x: x.view(),
            sample_shape: &[2],
            y: &y,
            teacher: Some(liar.view()),
            num_classes: 3,
        };
        let auto = AutoSearch {
            candidates: vec![Alpha::new(0.0).unwrap(), Alpha::new(0.9).unwrap()],
            holdout: 0.3,
        };
        let t = Temperature::new(1.0).unwrap();
        let keep = Keep::new(0.7).unwrap();
        let kept: Vec<usize> = (0..105).collect();
        let choice = search(&manifest.student, &set, &kept, &auto, t, keep, 0, None).unwrap();
        assert_eq!(choice.alpha.get(), 0.0, "{:?}", choice.trials);
        assert_eq!(choice.trials.len(), 2);
        let acc = |i: usize| choice.trials[i].holdout_accuracy.unwrap();
        assert!(acc(0) > 0.9 && acc(1) < 0.5, "{:?}", choice.trials);
        // The same inputs choose the same way.
        let again = search(&manifest.student, &set, &kept, &auto, t, keep, 0, None).unwrap();
        assert_eq!(again.trials, choice.trials);
    }

    #[test]
    fn the_sample_is_stratified_over_the_whole_set_and_deterministic() {
        let labels: Vec<u32> = (0..300).map(|i| if i < 200 { 0 } else { 1 }).collect();
        let sample = stratified_sample(&labels, 30, 7);
        assert_eq!(sample.iter().filter(|&&i| labels[i] == 0).count(), 20);
        assert_eq!(sample.iter().filter(|&&i| labels[i] == 1).count(), 10);
        assert_eq!(stratified_sample(&labels, 30, 7), sample);
        assert_ne!(stratified_sample(&labels, 30, 8), sample);
        assert!(sample.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn best_takes_the_highest_accuracy_then_the_nearest_to_the_prior() {
        let t = |alpha: f32, acc: Option<f64>| Trial {
            alpha,
            holdout_accuracy: acc,
        };
        let trials = [t(0.0, Some(0.8)), t(0.5, Some(0.9)), t(0.9, Some(0.85))];
        assert_eq!(best(&trials, 0.9), Some(1));
        let tied = [t(0.0, Some(0.9)), t(0.5, Some(0.9)), t(0.9, Some(0.9))];
        assert_eq!(best(&tied, 0.9), Some(2));
        assert_eq!(best(&tied, 0.6), Some(1));
        let diverged = [t(0.0, None), t(0.5, Some(0.1))];
        assert_eq!(best(&diverged, 0.9), Some(1));
        assert_eq!(best(&[t(0.0, None)], 0.9), None);
    }
}
