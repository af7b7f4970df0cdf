//! Where a training step's time goes, per layer kind (`kdprune bench --layers`): each leaf
//! layer's forward and backward calls ([`crate::train::layers::layer::forward_timed`]), and a
//! residual block's own copy and add, timed and summed by kind. Off unless switched on; off,
//! a layer call pays one relaxed atomic load.
//!
//! Times are wall seconds of the calls. In a network split into shards (no batch norm), the
//! shards' calls run on several threads at once, so their sum is thread-seconds; a network
//! with batch norm runs unsharded, its layers parallel inside.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

static ON: AtomicBool = AtomicBool::new(false);
static TIMES: Mutex<BTreeMap<(String, Pass), (f64, u64)>> = Mutex::new(BTreeMap::new());

/// The pass a time belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pass {
    Forward,
    Backward,
}

/// One kind's summed time.
#[derive(Debug, Clone, Serialize)]
pub struct KindTime {
    pub kind: String,
    pub pass: Pass,
    pub seconds: f64,
    pub calls: u64,
}

/// Switches profiling on (clearing what was summed) or off.
pub fn set_enabled(on: bool) {
    if on {
        TIMES.lock().expect("profile lock").clear();
    }
    ON.store(on, Ordering::Relaxed);
}

/// The times summed since profiling was switched on, largest first.
pub fn take() -> Vec<KindTime> {
    let mut times: Vec<KindTime> = TIMES
        .lock()
        .expect("profile lock")
        .iter()
        .map(|((kind, pass), &(seconds, calls))| KindTime {
            kind: kind.clone(),
            pass: *pass,
            seconds,
            calls,
        })
        .collect();
    times.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    times
}

/// Runs `f`, adding its wall time to `kind` under `pass` when profiling is on.
pub fn time<T>(kind: impl FnOnce() -> String, pass: Pass, f: impl FnOnce() -> T) -> T {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let out = f();
    let seconds = start.elapsed().as_secs_f64();
    let mut times = TIMES.lock().expect("profile lock");
    let entry = times.entry((kind(), pass)).or_default();
    entry.0 += seconds;
    entry.1 += 1;
    out
}

/// Whether profiling is on.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// A layer's kind from its description: a convolution by kernel and stride (`conv 16 k3 s2
/// p1` → `conv k3 s2`), anything else by its first word.
pub fn kind_of(describe: &str) -> String {
    let mut words = describe.split_whitespace();
    let first = words.next().unwrap_or("?");
    if first != "conv" {
        return first.to_string();
    }
    let field = |prefix: char, default: &str| {
        describe
            .split_whitespace()
            .skip(1)
            .find(|w| w.starts_with(prefix) && w[1..].chars().all(|c| c.is_ascii_digit()))
            .map_or(default.to_string(), |w| w.to_string())
    };
    format!("conv {} {}", field('k', "k3"), field('s', "s1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_hand() {
        assert_eq!(kind_of("conv 16 k3 s2 p1"), "conv k3 s2");
        assert_eq!(kind_of("conv 32 k1 s2 p0"), "conv k1 s2");
        assert_eq!(kind_of("bn"), "bn");
        assert_eq!(kind_of("dense 10"), "dense");
    }
}
