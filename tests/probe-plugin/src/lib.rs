//! Test fixture, not a pruning method: `probe-inputs` asks for every input the host offers
//! (all optional) and writes each one it receives to the folder named by its `dump`
//! parameter, as `<name with / as __>.bin` (the values as little-endian f32) and `.txt` (dtype
//! and shape), then returns the scores `0, 1, ..., N-1`. `probe-unknown-input` asks for an
//! input no host has, so the host must refuse it with one line.

use std::io::Write;

use kdprune_plugin_api::{
    export_plugins, ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// Every input a host of this plugin-api supplies.
const INPUTS: &[&str] = kdprune_plugin_api::INPUT_NAMES;

pub struct Probe;

impl Scorer for Probe {
    fn info() -> PluginInfo {
        let mut info =
            PluginInfo::pruning_method("probe-inputs", "0.0.1", "writes its inputs to a folder")
                .param(
                    "dump",
                    ParamValue::Text("".into()),
                    "folder to write the inputs to",
                )
                .budget_independent();
        for name in INPUTS {
            info = info.optional_input(name);
        }
        info
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let dump = std::path::PathBuf::from(request.text("dump")?);
        std::fs::create_dir_all(&dump).map_err(|e| PluginError::new(e.to_string()))?;
        for tensor in request.inputs.iter() {
            let stem = tensor.name.as_str().replace('/', "__");
            let values = tensor.to_f32()?;
            let mut bin = std::fs::File::create(dump.join(format!("{stem}.bin")))
                .map_err(|e| PluginError::new(e.to_string()))?;
            for v in values {
                bin.write_all(&v.to_le_bytes())
                    .map_err(|e| PluginError::new(e.to_string()))?;
            }
            let shape: Vec<String> = tensor.shape().iter().map(|d| d.to_string()).collect();
            std::fs::write(
                dump.join(format!("{stem}.txt")),
                format!("{} {}", tensor.dtype()?.as_str(), shape.join(",")),
            )
            .map_err(|e| PluginError::new(e.to_string()))?;
        }
        let n = request.train.len();
        Ok(Selection::scores((0..n).map(|i| i as f32).collect()))
    }
}

pub struct UnknownInput;

impl Scorer for UnknownInput {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "probe-unknown-input",
            "0.0.1",
            "asks for an input no host has",
        )
        .input("dynamics/forgetting_events")
    }

    fn score(_: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        Err(PluginError::new("never called"))
    }
}

export_plugins! {
    scorers: [Probe, UnknownInput],
    teachers: [],
}
