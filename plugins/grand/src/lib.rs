//! kdprune pruning method `grand` (Paul et al. 2021): the norm of the loss gradient of each
//! example, averaged over the proxy's runs. High means hard.
//!
//! Reads `dynamics/pass/grad_norm` `[R, T, N]`: the gradient with respect to the last dense
//! layer in closed form, `‖p − onehot(y)‖₂ · sqrt(‖h‖² + 1)` (as DeepCore computes GraNd;
//! Paul et al. take the whole network's gradient, which costs a backward pass per example —
//! see docs/methods.md), and `dynamics/pass/epochs`. Paul et al. score GraNd at
//! initialisation: set `[dynamics] early_steps = [0]` and keep the default `epoch = -1`.

use kdprune_plugin_api::{
    export_plugins,
    records::{mean_over_runs, record_for_epoch, records},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

pub struct Grand;

impl Scorer for Grand {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "grand",
            env!("CARGO_PKG_VERSION"),
            "GraNd: norm of the loss gradient (last layer, closed form) of the proxy, mean over runs (Paul et al. 2021)",
        )
        .param(
            "epoch",
            ParamValue::Float(-1.0),
            "epoch of the pass record used (the nearest one); -1: the first record (initialisation with [dynamics] early_steps = [0])",
        )
        .input("dynamics/pass/grad_norm")
        .input("dynamics/pass/epochs")
        .high_is_hard(true)
        .budget_independent()
        .score_meaning("a large gradient: the example moves the model most")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let records = records(request, "dynamics/pass/grad_norm")?;
        let epochs = request.require("dynamics/pass/epochs")?.f32()?;
        let t = record_for_epoch(epochs, request.float("epoch")?)?;
        let per_run: Vec<Vec<f32>> = (0..records.runs)
            .map(|r| records.at(r, t).to_vec())
            .collect();
        Ok(Selection::scores(mean_over_runs(&per_run)))
    }
}

export_plugins! {
    scorers: [Grand],
    teachers: [],
}
