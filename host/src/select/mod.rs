//! Selection policies: from a pruning method's answer to the kept indices.
//!
//! Owns turning scores into a subset of exactly `K` examples (hardest, easiest, or hardest
//! per class in proportion to class sizes). Ties are broken by index so that a selection is
//! reproducible. Methods that return a subset are taken as they are.

use crate::manifest::Policy;

/// A pruning method's answer, checked by the host (see `plugins::Plugin::score`).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One score per training example, `[N]`, finite.
    Scores(Vec<f32>),
    /// `K` distinct indices `< N`.
    Subset(Vec<u32>),
}

/// The kept indices, sorted ascending, `[K]`.
///
/// `selection`: scores `[N]` or a subset; `high_is_hard`: what the method said of its scores;
/// `labels`: `[N]`, used by the stratified policy.
pub fn kept_indices(
    selection: &Answer,
    budget: usize,
    policy: Policy,
    high_is_hard: bool,
    labels: &[u32],
    num_classes: usize,
) -> Vec<u32> {
    let mut kept = match selection {
        Answer::Subset(indices) => indices.to_vec(),
        Answer::Scores(values) => {
            // Hardness: larger is harder, whatever the method's own convention.
            let hardness: Vec<f32> = if high_is_hard {
                values.to_vec()
            } else {
                values.iter().map(|v| -v).collect()
            };
            match policy {
                Policy::Hardest => top_k(&hardness, (0..hardness.len() as u32).collect(), budget),
                Policy::Easiest => {
                    let easiness: Vec<f32> = hardness.iter().map(|v| -v).collect();
                    top_k(&easiness, (0..easiness.len() as u32).collect(), budget)
                }
                Policy::Stratified => stratified(&hardness, budget, labels, num_classes),
            }
        }
    };
    kept.sort_unstable();
    kept
}

/// The `k` candidates with the largest key (ties: smaller index first).
fn top_k(key: &[f32], mut candidates: Vec<u32>, k: usize) -> Vec<u32> {
    candidates.sort_by(|&a, &b| key[b as usize].total_cmp(&key[a as usize]).then(a.cmp(&b)));
    candidates.truncate(k);
    candidates
}

/// Hardest examples within each class; class budgets proportional to class sizes, rounded
/// by largest remainder so that they add up to `budget`.
fn stratified(hardness: &[f32], budget: usize, labels: &[u32], num_classes: usize) -> Vec<u32> {
    let n = labels.len();
    let mut by_class: Vec<Vec<u32>> = vec![Vec::new(); num_classes];
    for (i, &y) in labels.iter().enumerate() {
        by_class[y as usize].push(i as u32);
    }
    let exact: Vec<f64> = by_class
        .iter()
        .map(|c| c.len() as f64 * budget as f64 / n.max(1) as f64)
        .collect();
    let mut quota: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut remaining = budget - quota.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..num_classes).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    for c in order.into_iter().cycle().take(num_classes * 2) {
        if remaining == 0 {
            break;
        }
        if quota[c] < by_class[c].len() {
            quota[c] += 1;
            remaining -= 1;
        }
    }
    by_class
        .into_iter()
        .zip(quota)
        .flat_map(|(members, q)| top_k(hardness, members, q))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardest_and_easiest() {
        let s = Answer::Scores(vec![0.1, 0.9, 0.5, 0.9]);
        let labels = [0, 0, 1, 1];
        assert_eq!(
            kept_indices(&s, 2, Policy::Hardest, true, &labels, 2),
            vec![1, 3]
        );
        assert_eq!(
            kept_indices(&s, 2, Policy::Easiest, true, &labels, 2),
            vec![0, 2]
        );
        // A method whose low score means hard.
        assert_eq!(
            kept_indices(&s, 1, Policy::Hardest, false, &labels, 2),
            vec![0]
        );
    }

    #[test]
    fn stratified_keeps_class_proportions() {
        let values: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1];
        let s = Answer::Scores(values);
        let kept = kept_indices(&s, 5, Policy::Stratified, true, &labels, 2);
        assert_eq!(kept, vec![3, 4, 5, 8, 9]);
    }
}
