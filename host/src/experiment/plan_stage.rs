//! Stage 1 of `run`, and the whole of `check` but its teachers: the methods resolved against
//! the loaded plugins, the output folder taken (its lock, its results read and writable),
//! the data read and normalised (every keep keeping at least one example), the cells planned and keyed, and the inputs the pending
//! cells need; then the memory: the networks to train and the dynamics' records. `check` and `run` call this one function, so `check`
//! refuses what `run` would refuse before training, in the same order with the same line.

use std::collections::HashSet;

use super::grid::{CellKeys, Grid};
use super::plan::{
    check_dynamics_memory, check_methods, check_training_memory, refuse_empty_keeps, Method,
};
use super::stages::{load_data, DataStage};
use crate::inputs::Needs;
use crate::manifest::Manifest;
use crate::plugins::Registry;
use crate::results::{OutputLock, ResultStore};
use crate::shard::Shard;
use crate::Error;

/// What stage 1 hands on.
pub(crate) struct PlanStage<'r> {
    pub(crate) methods: Vec<Method<'r>>,
    /// Held until the run ends: no second writer on the output folder.
    pub(crate) lock: OutputLock,
    pub(crate) store: ResultStore,
    pub(crate) data: DataStage,
    pub(crate) keys: CellKeys,
    pub(crate) grid: Grid,
    /// What the pending cells' methods need.
    pub(crate) needs: Needs,
}

/// Plans `manifest` with the plugins of `registry`; `done_before`: keys a shard leaves to
/// the main folder (empty otherwise).
pub(crate) fn plan_stage<'r>(
    manifest: &'r Manifest,
    registry: &'r Registry,
    done_before: &HashSet<String>,
    shard: Option<Shard>,
) -> Result<PlanStage<'r>, Error> {
    let methods = check_methods(manifest, registry)?;
    let lock = OutputLock::acquire(&manifest.output)?;
    let store = ResultStore::open(&manifest.output)?;
    store.check_writable()?;
    let data = load_data(manifest)?;
    refuse_empty_keeps(manifest, &methods, data.train.len())?;
    let keys = CellKeys::new(manifest, registry, &methods, &data.train, &data.test)?;
    let grid = Grid::plan(manifest, &methods, &keys, (&store, done_before), shard);
    let needs = grid.needs(&methods);
    check_training_memory(manifest, &needs, &data.train)?;
    check_dynamics_memory(manifest, &needs, &data.train)?;
    Ok(PlanStage {
        methods,
        lock,
        store,
        data,
        keys,
        grid,
        needs,
    })
}
