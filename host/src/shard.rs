//! How one manifest's work is split between `n` processes (`--shard i/n`), each started by the
//! user's own scheduler (a Slurm array, a Kubernetes Indexed Job): kdprune schedules nothing.
//! A shard is told its index and the count; what it does follows from them alone, so any
//! process may run any shard, in any order, again after a failure.

use std::ops::Range;

/// Shard `index` of `count` (0-based), `0 ≤ index < count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Option<Self> {
        (count > 0 && index < count).then_some(Self { index, count })
    }

    /// Parses `i/n` as `--shard` takes it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "--shard {text:?}: give i/n with 0 <= i < n, e.g. 0/4 for the first of four (Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
            )
        };
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Self::new(i, n).ok_or_else(bad)
    }

    pub fn index(self) -> usize {
        self.index
    }
    pub fn count(self) -> usize {
        self.count
    }

    /// Whether the `k`-th unit of a list dealt round-robin is this shard's.
    pub fn owns(self, k: usize) -> bool {
        k % self.count == self.index
    }

    /// This shard's contiguous share of `0..rows`, cut at multiples of `step` (a batch), so
    /// each shard sees exactly the batches one process would: batch-dependent arithmetic gives
    /// the same bits either way.
    pub fn rows(self, rows: usize, step: usize) -> Range<usize> {
        let step = step.max(1);
        let batches = rows.div_ceil(step);
        let start = batches * self.index / self.count * step;
        let end = (batches * (self.index + 1) / self.count * step).min(rows);
        start.min(rows)..end
    }

    /// `i-of-n`, as part files and folders are named.
    pub fn tag(self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard::new(2, 4).unwrap());
        for bad in ["4/4", "1", "a/2", "0/0", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn row_shares_cover_every_row_once_at_batch_boundaries() {
        for (rows, step, count) in [(1000, 64, 3), (10, 64, 4), (1, 1, 2), (257, 256, 2)] {
            let mut next = 0;
            for i in 0..count {
                let r = Shard::new(i, count).unwrap().rows(rows, step);
                assert_eq!(r.start, next.min(rows), "{rows} {step} {count}");
                assert!(r.start.is_multiple_of(step) || r.start == rows);
                next = r.end.max(r.start);
            }
            assert_eq!(next, rows);
        }
    }
}
