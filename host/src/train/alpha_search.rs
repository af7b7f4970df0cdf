//! `alpha = "auto"`: the distillation weight of one cell chosen by a held-out search inside
//! its kept subset. A stratified share of the kept examples is set aside, one student per
//! candidate α is trained on the rest with the cell's teacher and seed, and the α whose
//! student scores best on the set-aside examples is the cell's α; the cell's student is then
//! trained on the whole kept subset with it. Nothing outside the kept subset is looked at (no
//! test data, no pruned-away example), so the choice sees the teacher's quality on this data —
//! what a rule of the kept fraction alone cannot (docs/results.md: such a rule misses by up to
//! 12 points with teachers weaker than the student).

use ndarray::Axis;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Kd, OnlineTeacher, TrainError, TrainSet};
use crate::manifest::{Alpha, Keep, StudentSpec, Temperature};

/// The name of the search in results and cell keys; a changed search gets a new name, so
/// students chosen by an older one are not reused.
pub const RULE: &str = "auto-v3";

/// How `"auto"` searches: `[distillation] auto = { candidates, holdout }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoSearch {
    /// The weights tried, ascending, without repeats.
    pub candidates: Vec<Alpha>,
    /// Share of each class of the kept subset set aside for choosing, in (0, 0.5].
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
            "held-out search over [{}], {} % of each class of the kept subset set aside",
            shown.join(", "),
            (self.holdout * 100.0).round()
        )
    }
}

/// Positions `0..labels.len()` split into (fit, held out): per class, `round(holdout · count)`
/// positions chosen by `seed` are held out, never a class's last one. Both lists ascending.
///
/// `labels`: `[K]`.
pub fn stratified_split(labels: &[u32], holdout: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa1fa_5ea7);
    let mut held = vec![false; labels.len()];
    for members in &mut by_class {
        members.shuffle(&mut rng);
        let take = ((members.len() as f64 * holdout as f64).round() as usize)
            .min(members.len().saturating_sub(1));
        for &i in &members[..take] {
            held[i] = true;
        }
    }
    (0..labels.len()).partition(|&i| !held[i])
}

/// The prior a tie between candidates falls back on: the kept-fraction rule fitted to
/// kdprune's sweeps, `clamp(1.2 − keep, 0.5, 0.9)` (the best α grows as keep shrinks).
fn prior(keep: Keep) -> f64 {
    (1.2 - keep.get() as f64).clamp(0.5, 0.9)
}

/// Runs the search for one cell. `data` is the whole kept subset (its `teacher` required);
/// the students are trained with `spec`, `temperature` and `seed` as the cell's own, and
/// `online` when the cell distils online. Errors other than divergence stop the search.
pub fn search(
    spec: &StudentSpec,
    data: &TrainSet<'_>,
    search: &AutoSearch,
    temperature: Temperature,
    keep: Keep,
    seed: u64,
    mut online: Option<OnlineTeacher<'_>>,
) -> Result<Choice, TrainError> {
    let teacher = data
        .teacher
        .ok_or_else(|| TrainError::Shape("the α search needs the teacher's scores".into()))?;
    let (fit, held) = stratified_split(data.y, search.holdout, seed);
    if held.is_empty() || fit.is_empty() {
        return Err(TrainError::Shape(format!(
            "{} kept examples are too few for alpha = \"auto\"'s held-out search ([distillation] auto.holdout = {}); keep more, or give fixed alphas",
            data.y.len(),
            search.holdout
        )));
    }
    let fit_x = data.x.select(Axis(0), &fit);
    let fit_y: Vec<u32> = fit.iter().map(|&i| data.y[i]).collect();
    let fit_teacher = teacher.select(Axis(0), &fit);
    let held_x = data.x.select(Axis(0), &held);
    let held_y: Vec<u32> = held.iter().map(|&i| data.y[i]).collect();
    let fit_set = TrainSet {
        x: fit_x.view(),
        sample_shape: data.sample_shape,
        y: &fit_y,
        teacher: Some(fit_teacher.view()),
        num_classes: data.num_classes,
    };
    let mut trials = Vec::with_capacity(search.candidates.len());
    for &alpha in &search.candidates {
        let kd = Kd { alpha, temperature };
        let label = format!("α search {}", alpha.get());
        let trained = super::train_observed(
            spec,
            &fit_set,
            kd,
            seed,
            super::lend(&mut online),
            None,
            &label,
        );
        let holdout_accuracy = match trained {
            Ok((mut model, _)) => Some(super::evaluate(&mut model, held_x.view(), &held_y)),
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
            holdout: 0.2,
        };
        let t = Temperature::new(1.0).unwrap();
        let keep = Keep::new(0.1).unwrap();
        let choice = search(&manifest.student, &set, &auto, t, keep, 0, None).unwrap();
        assert_eq!(choice.alpha.get(), 0.0, "{:?}", choice.trials);
        assert_eq!(choice.trials.len(), 2);
        let acc = |i: usize| choice.trials[i].holdout_accuracy.unwrap();
        assert!(acc(0) > 0.9 && acc(1) < 0.5, "{:?}", choice.trials);
        // The same inputs choose the same way.
        let again = search(&manifest.student, &set, &auto, t, keep, 0, None).unwrap();
        assert_eq!(again.trials, choice.trials);
    }

    #[test]
    fn split_is_stratified_deterministic_and_keeps_every_class_in_the_fit_part() {
        let labels: Vec<u32> = (0..103).map(|i| (i % 3) as u32).chain([3]).collect();
        let (fit, held) = stratified_split(&labels, 0.2, 7);
        assert_eq!(fit.len() + held.len(), labels.len());
        for c in 0..3u32 {
            let n = labels.iter().filter(|&&l| l == c).count();
            let h = held.iter().filter(|&&i| labels[i] == c).count();
            assert_eq!(h, (n as f64 * 0.2).round() as usize, "class {c}");
        }
        // A class of one example stays in the fit part.
        assert!(fit.contains(&103));
        assert_eq!(
            stratified_split(&labels, 0.2, 7),
            (fit.clone(), held.clone())
        );
        assert_ne!(stratified_split(&labels, 0.2, 8).1, held);
        assert!(fit.windows(2).all(|w| w[0] < w[1]));
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
