//! Selection policies: from a pruning method's answer to the kept indices.
//!
//! Owns the policies and their parameters ([`Policy`]: a [`Rule`] and a [`Balance`], checked
//! once and then valid by construction) and turning scores into a subset of exactly `K`
//! examples. Scores are first oriented so that larger means harder (the method says which way
//! its scores point). Rules:
//! - `hardest` / `easiest`: the `K` largest / smallest hardness.
//! - `moderate` (Xia et al. 2023): the `K` examples around the median hardness (the middle
//!   band of the ranking).
//! - `ccs` (Zheng et al. 2023, coverage-centric): drop the hardest fraction β (likely
//!   mislabelled), split the remaining hardness range into `bins` equal-width strata, spread
//!   the budget from the smallest stratum up (each gets at most an equal share of what is
//!   left), and draw at random (seeded) within each stratum.
//! - `dual` (Cho et al. 2025): DUAL's Beta sampling, weighted draws whose mass moves from the
//!   hardest toward easier examples as the kept fraction shrinks ([`dual`]).
//!
//! Each rule may be applied per class (`balance`): quotas proportional to the class sizes, or
//! equal (smaller classes give their surplus to the others). Ties are broken by index so that
//! a selection is reproducible. Methods that return a subset are taken as they are.

pub mod dual;
mod keep;

pub use keep::Keep;

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A pruning method's answer, checked by the host (see `plugins::Plugin::score`).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One score per training example, `[N]`, finite.
    Scores(Vec<f32>),
    /// `K` distinct indices `< N`.
    Subset(Vec<u32>),
}

/// Default number of CCS strata (Zheng et al.'s code: `stratas = 50`).
pub const CCS_BINS: usize = 50;

/// How scores become a ranking (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    Hardest,
    Easiest,
    Moderate,
    /// `beta`: the hardest fraction dropped first; `None` follows Zheng et al.'s CIFAR-10
    /// settings by kept fraction ([`ccs_default_beta`]).
    Ccs {
        beta: Option<f64>,
        bins: usize,
    },
    /// `c_d`: the exponent of the pruned fraction in the Beta parameters ([`dual`]).
    Dual {
        c_d: f64,
    },
}

/// Whether a rule runs per class, and with which quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    None,
    /// Quotas proportional to the class sizes (largest remainder).
    Proportional,
    /// Equal quotas; a class smaller than its quota gives the rest to the others.
    Equal,
}

/// A checked selection policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    rule: Rule,
    balance: Balance,
}

/// β of CCS when the manifest does not set it: Zheng et al.'s hard cut-off rates for
/// CIFAR-10 (0 at 30 % and 50 % pruning, 10 % at 70 % and 80 %, 30 % at 90 %), by kept
/// fraction.
pub fn ccs_default_beta(keep: f64) -> f64 {
    if keep >= 0.5 {
        0.0
    } else if keep >= 0.2 {
        0.1
    } else {
        0.3
    }
}

impl Policy {
    /// The host's default: the hardest examples over the whole set.
    pub const HARDEST: Policy = Policy {
        rule: Rule::Hardest,
        balance: Balance::None,
    };

    /// Checks a policy: `rule` as in a manifest (`hardest`, `easiest`, `moderate`, `ccs`, or
    /// `stratified` = hardest with proportional quotas), `balance` (`none`, `proportional`,
    /// `equal`), and the rule's parameters (`ccs`: `beta` in [0, 1), `bins` ≥ 1). Errors say
    /// what is accepted.
    pub fn build(
        rule: &str,
        balance: Option<&str>,
        params: &BTreeMap<String, toml::Value>,
    ) -> Result<Policy, String> {
        let (rule_name, implied_balance) = match rule {
            "stratified" => ("hardest", Some(Balance::Proportional)),
            other => (other, None),
        };
        let allowed: &[&str] = match rule_name {
            "ccs" => &["beta", "bins"],
            "dual" => &["c_d"],
            _ => &[],
        };
        if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!(
                "policy {rule:?} has no parameter {unknown:?}; it takes {}",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ));
        }
        let rule = match rule_name {
            "hardest" => Rule::Hardest,
            "easiest" => Rule::Easiest,
            "moderate" => Rule::Moderate,
            "ccs" => {
                let beta = match params.get("beta") {
                    None => None,
                    Some(v) => {
                        let b = v
                            .as_float()
                            .or_else(|| v.as_integer().map(|i| i as f64))
                            .filter(|b| (0.0..1.0).contains(b))
                            .ok_or_else(|| {
                                format!("policy \"ccs\" beta = {v} must be a number in [0, 1) (the hardest fraction dropped)")
                            })?;
                        Some(b)
                    }
                };
                let bins = match params.get("bins") {
                    None => CCS_BINS,
                    Some(v) => v.as_integer().filter(|&b| b >= 1).ok_or_else(|| {
                        format!("policy \"ccs\" bins = {v} must be an integer >= 1")
                    })? as usize,
                };
                Rule::Ccs { beta, bins }
            }
            "dual" => {
                let c_d = match params.get("c_d") {
                    None => dual::DEFAULT_C_D,
                    Some(v) => v
                        .as_float()
                        .or_else(|| v.as_integer().map(|i| i as f64))
                        .filter(|c| c.is_finite() && *c > 0.0)
                        .ok_or_else(|| {
                            format!("policy \"dual\" c_d = {v} must be a positive number (the reference: 4)")
                        })?,
                };
                Rule::Dual { c_d }
            }
            other => {
                return Err(format!(
                    "unknown policy {other:?}; use hardest, easiest, moderate, ccs, dual or stratified{}",
                    crate::suggest::did_you_mean(
                        other,
                        ["hardest", "easiest", "moderate", "ccs", "dual", "stratified"]
                    )
                ))
            }
        };
        let balance = match (balance, implied_balance) {
            (None, implied) => implied.unwrap_or(Balance::None),
            (Some(_), Some(_)) => {
                return Err("policy \"stratified\" is hardest with balance = \"proportional\"; give policy = \"hardest\" to choose another balance".into())
            }
            (Some("none"), None) => Balance::None,
            (Some("proportional"), None) => Balance::Proportional,
            (Some("equal"), None) => Balance::Equal,
            (Some(other), None) => {
                return Err(format!(
                    "unknown balance {other:?}; use none, proportional or equal"
                ))
            }
        };
        Ok(Policy { rule, balance })
    }

    /// A plugin's `default_policy` text: `rule` or `rule:balance` (e.g. `hardest:proportional`).
    pub fn from_default_text(text: &str) -> Result<Policy, String> {
        let (rule, balance) = match text.split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (text, None),
        };
        Self::build(rule.trim(), balance.map(str::trim), &BTreeMap::new())
    }

    pub fn rule(&self) -> Rule {
        self.rule
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// The policy as recorded in results: `hardest`, `stratified`, `moderate+equal`,
    /// `ccs(beta=0.1,bins=50)`, ...
    pub fn describe(&self) -> String {
        let rule = match self.rule {
            Rule::Hardest if self.balance == Balance::Proportional => return "stratified".into(),
            Rule::Hardest => "hardest".to_string(),
            Rule::Easiest => "easiest".to_string(),
            Rule::Moderate => "moderate".to_string(),
            Rule::Ccs { beta, bins } => match beta {
                Some(b) => format!("ccs(beta={b},bins={bins})"),
                None => format!("ccs(bins={bins})"),
            },
            Rule::Dual { c_d } if c_d == dual::DEFAULT_C_D => "dual".to_string(),
            Rule::Dual { c_d } => format!("dual(c_d={c_d})"),
        };
        match self.balance {
            Balance::None => rule,
            Balance::Proportional => format!("{rule}+proportional"),
            Balance::Equal => format!("{rule}+equal"),
        }
    }
}

impl Policy {
    /// The parameters the policy used at `keep` that the manifest may leave to it (CCS's β,
    /// chosen by keep when not given, and its bins), for the results; `None` for rules
    /// without parameters.
    pub fn chosen_params(&self, keep: f64) -> Option<serde_json::Value> {
        match self.rule {
            Rule::Ccs { beta, bins } => Some(serde_json::json!({
                "beta": beta.unwrap_or_else(|| ccs_default_beta(keep)),
                "bins": bins,
            })),
            // At anchor 0: the draw's anchor, the ten hardest examples' easiness quantile
            // (5/n), moves b by a factor 1 − 5/n.
            Rule::Dual { c_d } => {
                let (a, b) = dual::beta_parameters(keep, 0.0, c_d);
                Some(serde_json::json!({ "c_d": c_d, "a": a, "b": b }))
            }
            Rule::Hardest | Rule::Easiest | Rule::Moderate => None,
        }
    }
}

/// The kept indices, sorted ascending, `[K]`.
///
/// `answer`: scores `[N]` or a subset; `high_is_hard`: what the method said of its scores;
/// `labels`: `[N]`, used by balanced policies; `keep`: the kept fraction (CCS's default β);
/// `seed`: CCS's draws within strata.
#[allow(clippy::too_many_arguments)]
pub fn kept_indices(
    answer: &Answer,
    budget: usize,
    policy: Policy,
    high_is_hard: bool,
    labels: &[u32],
    num_classes: usize,
    keep: f64,
    seed: u64,
) -> Vec<u32> {
    let mut kept = match answer {
        Answer::Subset(indices) => indices.to_vec(),
        Answer::Scores(values) => {
            // Hardness: larger is harder, whatever the method's own convention.
            let hardness: Vec<f32> = if high_is_hard {
                values.to_vec()
            } else {
                values.iter().map(|v| -v).collect()
            };
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5e1e_c7ed);
            let ranked = Ranked {
                hardness: &hardness,
                tie: tie_order(hardness.len(), seed),
            };
            let all: Vec<u32> = (0..hardness.len() as u32).collect();
            match policy.balance {
                Balance::None => apply(policy.rule, &ranked, all, budget, keep, &mut rng),
                balance => {
                    let mut by_class: Vec<Vec<u32>> = vec![Vec::new(); num_classes];
                    for (i, &y) in labels.iter().enumerate() {
                        by_class[y as usize].push(i as u32);
                    }
                    let sizes: Vec<usize> = by_class.iter().map(Vec::len).collect();
                    let quotas = match balance {
                        Balance::Equal => equal_quotas(&sizes, budget),
                        _ => proportional_quotas(&sizes, budget),
                    };
                    by_class
                        .into_iter()
                        .zip(quotas)
                        .flat_map(|(members, q)| {
                            apply(policy.rule, &ranked, members, q, keep, &mut rng)
                        })
                        .collect()
                }
            }
        }
    };
    kept.sort_unstable();
    kept
}

/// Hardness `[N]` and the order that breaks its ties.
struct Ranked<'a> {
    hardness: &'a [f32],
    /// `[N]`: a seeded random permutation; of two examples equally hard, the one with the
    /// smaller `tie` ranks as the harder.
    tie: Vec<u32>,
}

/// A random permutation of `0..n` drawn from `seed` (its own stream, apart from CCS's
/// draws): equal scores are ranked at random, not by their position in the file, where a
/// score with many ties (forgetting after a short proxy: most examples never forgotten) would
/// keep the examples that come first.
fn tie_order(n: usize, seed: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x71e5_b4ea));
    order
}

/// `k` of `candidates` by `rule` on `ranked`.
fn apply(
    rule: Rule,
    ranked: &Ranked<'_>,
    mut candidates: Vec<u32>,
    k: usize,
    keep: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<u32> {
    let k = k.min(candidates.len());
    let hardness = ranked.hardness;
    // Hardest first; ties by the seeded random order.
    candidates.sort_by(|&a, &b| {
        hardness[b as usize]
            .total_cmp(&hardness[a as usize])
            .then(ranked.tie[a as usize].cmp(&ranked.tie[b as usize]))
    });
    match rule {
        Rule::Hardest => {
            candidates.truncate(k);
            candidates
        }
        Rule::Easiest => candidates.split_off(candidates.len() - k),
        Rule::Moderate => {
            let start = (candidates.len() - k) / 2;
            candidates[start..start + k].to_vec()
        }
        Rule::Ccs { beta, bins } => {
            let beta = beta.unwrap_or_else(|| ccs_default_beta(keep));
            // Never drop so many that the budget cannot be met.
            let dropped = ((beta * candidates.len() as f64) as usize).min(candidates.len() - k);
            ccs(hardness, &candidates[dropped..], k, bins, rng)
        }
        Rule::Dual { c_d } => dual::beta_sample(hardness, &candidates, k, keep, c_d, rng),
    }
}

/// Zheng et al.'s stratified sampling: `bins` equal-width strata of `hardness` over `pool`,
/// budgets from the smallest stratum up, random draws within strata.
fn ccs(hardness: &[f32], pool: &[u32], k: usize, bins: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    if pool.is_empty() || k == 0 {
        return Vec::new();
    }
    let (lo, hi) = pool
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &i| {
            (lo.min(hardness[i as usize]), hi.max(hardness[i as usize]))
        });
    let width = (hi - lo) as f64 / bins as f64;
    let mut strata: Vec<Vec<u32>> = vec![Vec::new(); bins];
    for &i in pool {
        let s = if width > 0.0 {
            (((hardness[i as usize] - lo) as f64 / width) as usize).min(bins - 1)
        } else {
            0
        };
        strata[s].push(i);
    }
    let sizes: Vec<usize> = strata.iter().map(Vec::len).collect();
    let budgets = ccs_budgets(&sizes, k);
    let mut kept = Vec::with_capacity(k);
    for (mut members, b) in strata.into_iter().zip(budgets) {
        members.sort_unstable();
        members.shuffle(rng);
        kept.extend_from_slice(&members[..b]);
    }
    kept
}

/// CCS's budget per stratum: strata in ascending size (ties by position), each taking at
/// most an equal share of the budget left (`rest / strata left`).
pub fn ccs_budgets(sizes: &[usize], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&s| (sizes[s], s));
    let mut budgets = vec![0; sizes.len()];
    let mut rest = k;
    for (taken, &s) in order.iter().enumerate() {
        let share = rest / (sizes.len() - taken);
        budgets[s] = sizes[s].min(share);
        rest -= budgets[s];
    }
    budgets
}

/// Quotas proportional to `sizes`, summing to `budget` (largest remainder, ties by class): the
/// same split the per-class plugins (herding, k-center) use.
pub use kdprune_plugin_api::records::proportional_quotas;

/// Equal quotas summing to `budget`: water-filling, so a class smaller than its share keeps
/// all its examples and the others share the rest (extra units to the first classes).
pub fn equal_quotas(sizes: &[usize], budget: usize) -> Vec<usize> {
    let mut quota = vec![0; sizes.len()];
    let mut remaining = budget.min(sizes.iter().sum());
    loop {
        let open: Vec<usize> = (0..sizes.len()).filter(|&c| quota[c] < sizes[c]).collect();
        if remaining == 0 || open.is_empty() {
            return quota;
        }
        let share = (remaining / open.len()).max(1);
        for c in open {
            let add = share.min(sizes[c] - quota[c]).min(remaining);
            quota[c] += add;
            remaining -= add;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rule: &str, balance: Option<&str>) -> Policy {
        Policy::build(rule, balance, &BTreeMap::new()).unwrap()
    }

    fn kept(answer: &Answer, k: usize, p: Policy, labels: &[u32], classes: usize) -> Vec<u32> {
        kept_indices(answer, k, p, true, labels, classes, 0.5, 0)
    }

    #[test]
    fn hardest_easiest_and_moderate() {
        let s = Answer::Scores(vec![0.1, 0.9, 0.5, 0.9, 0.3, 0.7]);
        let labels = [0, 0, 1, 1, 0, 1];
        assert_eq!(kept(&s, 2, policy("hardest", None), &labels, 2), vec![1, 3]);
        assert_eq!(kept(&s, 2, policy("easiest", None), &labels, 2), vec![0, 4]);
        // Ranking by hardness: 1, 3, 5, 2, 4, 0; the middle two are 5 and 2.
        assert_eq!(
            kept(&s, 2, policy("moderate", None), &labels, 2),
            vec![2, 5]
        );
        // A method whose low score means hard.
        let low_is_hard = kept_indices(&s, 1, Policy::HARDEST, false, &labels, 2, 0.5, 0);
        assert_eq!(low_is_hard, vec![0]);
    }

    #[test]
    fn class_balance_proportional_and_equal() {
        let values: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1];
        let s = Answer::Scores(values);
        // 6 and 4 examples, budget 5: quotas 3 and 2, the hardest of each.
        assert_eq!(
            kept(&s, 5, policy("stratified", None), &labels, 2),
            vec![3, 4, 5, 8, 9]
        );
        assert_eq!(
            kept(&s, 5, policy("hardest", Some("proportional")), &labels, 2),
            vec![3, 4, 5, 8, 9]
        );
        // Equal: 3 and 2 is not equal; 5 = 3 + 2 with the extra unit to class 0.
        assert_eq!(equal_quotas(&[6, 4], 5), vec![3, 2]);
        assert_eq!(equal_quotas(&[6, 4], 8), vec![4, 4]);
        assert_eq!(equal_quotas(&[10, 1, 10], 9), vec![4, 1, 4]);
        assert_eq!(
            kept(&s, 4, policy("easiest", Some("equal")), &labels, 2),
            vec![0, 1, 6, 7]
        );
        assert_eq!(proportional_quotas(&[5, 3, 2], 5), vec![3, 1, 1]);
        assert_eq!(proportional_quotas(&[5, 3, 2], 10), vec![5, 3, 2]);
    }

    #[test]
    fn ccs_budgets_fill_the_smallest_strata_first() {
        // Worked by hand: sizes 1, 10, 3, 10, budget 12 → ascending 1, 3, 10, 10: 12/4 = 3 → 1
        // (rest 11), 11/3 = 3 → 3 (rest 8), 8/2 = 4 → 4 (rest 4), 4/1 = 4 → 4.
        assert_eq!(ccs_budgets(&[1, 10, 3, 10], 12), vec![1, 4, 3, 4]);
        assert_eq!(ccs_budgets(&[5, 5], 3), vec![1, 2]);
        assert_eq!(ccs_budgets(&[2, 0, 2], 4), vec![2, 0, 2]);
    }

    #[test]
    fn ccs_drops_the_hardest_then_covers_the_range() {
        // 100 examples, hardness = index; β = 0.1 drops 90..99; 4 bins over 0..=89 hold
        // 0..=22, 23..=44, 45..=67, 68..=89 (width 22.25); budget 8: 2 from each.
        let s = Answer::Scores((0..100).map(|i| i as f32).collect());
        let mut params = BTreeMap::new();
        params.insert("beta".to_string(), toml::Value::Float(0.1));
        params.insert("bins".to_string(), toml::Value::Integer(4));
        let p = Policy::build("ccs", None, &params).unwrap();
        let labels = vec![0u32; 100];
        let picked = kept_indices(&s, 8, p, true, &labels, 1, 0.08, 3);
        assert_eq!(picked.len(), 8);
        assert!(picked.iter().all(|&i| i < 90), "{picked:?}");
        for (lo, hi) in [(0, 22), (23, 44), (45, 67), (68, 89)] {
            assert_eq!(
                picked.iter().filter(|&&i| (lo..=hi).contains(&i)).count(),
                2,
                "{picked:?}"
            );
        }
        // Seeded: the same seed gives the same draw, another seed another.
        assert_eq!(picked, kept_indices(&s, 8, p, true, &labels, 1, 0.08, 3));
        assert_ne!(picked, kept_indices(&s, 8, p, true, &labels, 1, 0.08, 4));
        assert_eq!(ccs_default_beta(0.1), 0.3);
        assert_eq!(ccs_default_beta(0.3), 0.1);
        assert_eq!(ccs_default_beta(0.7), 0.0);
    }

    #[test]
    fn equal_scores_are_kept_by_a_seeded_random_order_not_by_position() {
        let ties = Answer::Scores(vec![0.0; 1000]);
        let hardest = policy("hardest", None);
        let kept = |seed| kept_indices(&ties, 300, hardest, true, &[0; 1000], 1, 0.3, seed);
        assert_eq!(kept(0), kept(0), "seeded");
        assert_ne!(kept(0), kept(1));
        assert_ne!(
            kept(0),
            (0..300).collect::<Vec<u32>>(),
            "not the first in the file"
        );
        // Spread over the file: a quarter of the kept in each quarter, within noise.
        let first_quarter = kept(0).iter().filter(|&&i| i < 250).count();
        assert!((50..100).contains(&first_quarter), "{first_quarter}");
        // Distinct scores still decide alone.
        let distinct = Answer::Scores((0..1000).map(|i| i as f32).collect());
        let top = kept_indices(&distinct, 10, hardest, true, &[0; 1000], 1, 0.01, 5);
        assert_eq!(top, (990..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn policies_are_checked_and_described() {
        let mut params = BTreeMap::new();
        params.insert("beta".to_string(), toml::Value::Float(1.5));
        assert!(Policy::build("ccs", None, &params)
            .unwrap_err()
            .contains("[0, 1)"));
        params.clear();
        params.insert("bins".to_string(), toml::Value::Integer(5));
        assert!(Policy::build("hardest", None, &params)
            .unwrap_err()
            .contains("no parameter \"bins\""));
        assert!(Policy::build("hardst", None, &BTreeMap::new())
            .unwrap_err()
            .contains("unknown policy"));
        assert!(Policy::build("hardest", Some("equl"), &BTreeMap::new()).is_err());
        assert_eq!(policy("hardest", None).describe(), "hardest");
        assert_eq!(policy("stratified", None).describe(), "stratified");
        assert_eq!(
            policy("moderate", Some("equal")).describe(),
            "moderate+equal"
        );
        assert_eq!(
            Policy::from_default_text("hardest:proportional").unwrap(),
            policy("stratified", None)
        );
    }
}
