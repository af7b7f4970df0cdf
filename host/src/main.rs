//! The `kdprune` command line: parse, call the library, print.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// `println!` that ends the program quietly when the reader of stdout has gone
/// (`kdprune plugins --verbose | head`), as Unix tools do, instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }};
}

#[derive(Parser)]
#[command(
    name = "kdprune",
    version,
    about = "Train students on pruned data sets with knowledge distillation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Only warnings and errors on stderr, no progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Print the command's outcome as JSON on stdout (run, score, check, plugins).
    #[arg(long, global = true)]
    json: bool,
    /// Change one manifest setting for this command (repeatable), checked like the file:
    /// `--set student.epochs=5`, `--set output=runs/try`, `--set prune.0.keep=[0.1]`.
    #[arg(long = "set", global = true, value_name = "SECTION.FIELD=VALUE")]
    set: Vec<kdprune::manifest::overrides::Override>,
}

/// The `--set` overrides of this command, for every manifest it reads.
static OVERRIDES: std::sync::OnceLock<Vec<kdprune::manifest::overrides::Override>> =
    std::sync::OnceLock::new();

/// The manifest at `path` with this command's `--set` overrides.
fn load_manifest(
    path: &Path,
) -> Result<kdprune::manifest::Manifest, kdprune::manifest::ManifestError> {
    kdprune::manifest::load_with(path, OVERRIDES.get().map_or(&[], Vec::as_slice))
}

#[derive(Subcommand)]
enum Command {
    /// Run every cell of a manifest (method × keep × α × seed) and print the accuracy table.
    Run {
        manifest: PathBuf,
        /// Extra plugin folder (repeatable); also KDPRUNE_PLUGIN_PATH.
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
        /// Run only shard i of n of the cells, into <output>/shards/i-of-n (then `merge`).
        #[arg(long, value_parser = parse_shard)]
        shard: Option<kdprune::shard::Shard>,
    },
    /// Compute the inputs the cells need (teacher outputs, dynamics) into the cache, or shard
    /// i of n of them; a later `run` uses them.
    Prepare {
        manifest: PathBuf,
        /// Extra plugin folder (repeatable); also KDPRUNE_PLUGIN_PATH.
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
        /// Only shard i of n: its rows of each teacher's outputs; shard 0 also the dynamics.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<kdprune::shard::Shard>,
    },
    /// Join the shards of `run --shard` into the output folder, as one run would have
    /// written it.
    Merge { manifest: PathBuf },
    /// Write every method's scores and kept indices (.npy) without training students.
    Score {
        manifest: PathBuf,
        /// Extra plugin folder (repeatable); also KDPRUNE_PLUGIN_PATH.
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
        /// Also write the proxy inputs the methods read (dynamics, embedding) under
        /// <output>/scores/, a folder `[dynamics] from` reads.
        #[arg(long)]
        export_dynamics: bool,
    },
    /// List the plugins found in the plugin folders.
    Plugins {
        /// Plugin folder (repeatable); also KDPRUNE_PLUGIN_PATH.
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
        /// Also show each plugin's description and parameters.
        #[arg(long)]
        verbose: bool,
    },
    /// Check everything `run` checks before training (plugins, data, teacher, output).
    Check {
        manifest: PathBuf,
        /// Extra plugin folder (repeatable); also KDPRUNE_PLUGIN_PATH.
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
    },
    /// Write report.md and a self-contained report.html (tables, findings, plots) for an
    /// output folder's results.
    Report {
        /// An output folder (holding results.jsonl).
        run_dir: PathBuf,
    },
    /// Measure teacher images/s and student training samples/s on a manifest's data.
    Bench {
        manifest: PathBuf,
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
        #[command(flatten)]
        options: BenchOptions,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = if cli.quiet {
        EnvFilter::new("warn")
    } else {
        EnvFilter::try_from_env("KDPRUNE_LOG").unwrap_or_else(|_| EnvFilter::new("info,ort=warn"))
    };
    kdprune::progress::set_quiet(cli.quiet);
    if !cli.set.is_empty()
        && matches!(
            cli.command,
            Command::Report { .. } | Command::Plugins { .. }
        )
    {
        eprintln!("error: --set changes a manifest setting; this command reads no manifest, so leave it out");
        return ExitCode::FAILURE;
    }
    let _ = OVERRIDES.set(cli.set);
    tracing_subscriber::fmt()
        .fmt_fields(RoundedFields)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colour only for a person at a terminal (https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    match run(cli.command, cli.json) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Log fields as `name=value`, floats rounded to what they mean: seconds to the millisecond,
/// anything else to 4 significant digits (`train_accuracy=0.9647`, not 0.9647166666666667).
struct RoundedFields;

impl<'a> tracing_subscriber::field::MakeVisitor<tracing_subscriber::fmt::format::Writer<'a>>
    for RoundedFields
{
    type Visitor = Rounded<'a>;

    fn make_visitor(&self, writer: tracing_subscriber::fmt::format::Writer<'a>) -> Rounded<'a> {
        Rounded {
            writer,
            result: Ok(()),
            first: true,
        }
    }
}

struct Rounded<'a> {
    writer: tracing_subscriber::fmt::format::Writer<'a>,
    result: std::fmt::Result,
    first: bool,
}

impl Rounded<'_> {
    fn put(&mut self, name: &str, value: std::fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let gap = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{gap}{value}")
        } else {
            write!(self.writer, "{gap}{name}={value}")
        };
    }
}

/// `value` as a log line shows it.
fn rounded(name: &str, value: f64) -> String {
    if !value.is_finite() || value == 0.0 {
        return value.to_string();
    }
    let decimals = if name.ends_with("seconds") {
        3
    } else {
        (3 - value.abs().log10().floor() as i32).clamp(0, 8) as usize
    };
    format!("{value:.decimals$}")
}

impl tracing::field::Visit for Rounded<'_> {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        let text = rounded(field.name(), value);
        self.put(field.name(), format_args!("{text}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.put("message", format_args!("{value}"));
        } else {
            self.put(field.name(), format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.put(field.name(), format_args!("{value:?}"));
    }
}

impl tracing_subscriber::field::VisitOutput<std::fmt::Result> for Rounded<'_> {
    fn finish(self) -> std::fmt::Result {
        self.result
    }
}

impl tracing_subscriber::field::VisitFmt for Rounded<'_> {
    fn writer(&mut self) -> &mut dyn std::fmt::Write {
        &mut self.writer
    }
}

/// Prints `value` as JSON, numbers that came from f32 as written.
fn print_json(value: impl serde::Serialize) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(value)?;
    kdprune::results::tidy_floats(&mut value);
    out!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

fn parse_shard(text: &str) -> Result<kdprune::shard::Shard, String> {
    kdprune::shard::Shard::parse(text)
}

fn run(command: Command, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        Command::Score {
            manifest,
            plugin_dirs,
            export_dynamics,
        } => cmd_score(
            manifest,
            plugin_dirs,
            kdprune::experiment::ScoreOptions { export_dynamics },
            json,
        ),
        Command::Report { run_dir } => cmd_report(run_dir, json),
        Command::Prepare {
            manifest,
            plugin_dirs,
            shard,
        } => cmd_prepare(manifest, plugin_dirs, shard, json),
        Command::Merge { manifest } => cmd_merge(manifest, json),
        Command::Run {
            manifest,
            plugin_dirs,
            shard,
        } => cmd_run(manifest, plugin_dirs, shard, json),
        Command::Plugins {
            plugin_dirs,
            verbose,
        } => cmd_plugins(plugin_dirs, verbose, json),
        Command::Check {
            manifest,
            plugin_dirs,
        } => cmd_check(manifest, plugin_dirs, json),
        Command::Bench {
            manifest,
            plugin_dirs,
            options,
        } => cmd_bench(manifest, plugin_dirs, options),
    }
}

/// `kdprune score`.
fn cmd_score(
    manifest: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    options: kdprune::experiment::ScoreOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest(&manifest)?;
    let summary = kdprune::experiment::score(
        &manifest,
        &kdprune::experiment::RunOptions {
            plugin_dirs,
            shard: None,
        },
        options,
    )?;
    if json {
        print_json(&summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    for m in &summary.methods {
        let keeps: Vec<String> = m
            .keeps
            .iter()
            .map(|k| format!("{} ({} kept)", k.keep, k.kept))
            .collect();
        out!(
            "{}\tseed {}\t{:.2} s\t{}\t{}",
            m.method,
            m.seed,
            m.seconds,
            m.policy,
            keeps.join(", ")
        );
    }
    if let Some(d) = &summary.dynamics {
        out!(
            "dynamics: {} files under {}",
            d.files.len(),
            manifest.output.join(&d.folder).display()
        );
    }
    out!("summary in {}", summary.summary_path.display());
    Ok(ExitCode::SUCCESS)
}

/// `kdprune report`.
fn cmd_report(run_dir: PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let results = kdprune::results::read(&run_dir)?;
    let mut names: Vec<&str> = results.iter().map(|r| r.experiment.as_str()).collect();
    names.dedup();
    names.sort();
    names.dedup();
    let title = if names.is_empty() {
        run_dir.display().to_string()
    } else {
        names.join(", ")
    };
    let files = kdprune::report::write(&run_dir, &title, &results)?;
    if json {
        print_json(serde_json::json!({
            "results": results.len(),
            "markdown": files.markdown,
            "html": files.html,
        }))?;
    } else {
        out!("{}", files.text);
        out!(
            "{} results; report in {} and {}",
            results.len(),
            files.markdown.display(),
            files.html.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `kdprune prepare`.
fn cmd_prepare(
    manifest: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    shard: Option<kdprune::shard::Shard>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest(&manifest)?;
    let summary = kdprune::experiment::distributed::prepare(
        &manifest,
        &kdprune::experiment::RunOptions { plugin_dirs, shard },
    )?;
    if json {
        print_json(serde_json::json!({
            "teachers": summary.teachers,
            "dynamics_runs": summary.dynamics_runs,
            "seconds": summary.seconds,
        }))?;
    } else {
        for (teacher, what) in &summary.teachers {
            out!(
                "teacher {teacher}: {what} labelled into {}",
                manifest.cache_dir.display()
            );
        }
        if !summary.dynamics_runs.is_empty() {
            out!(
                "dynamics: proxy runs {:?} recorded into {}",
                summary.dynamics_runs,
                manifest.cache_dir.display()
            );
        }
        out!("prepared in {:.1} s", summary.seconds);
    }
    Ok(ExitCode::SUCCESS)
}

/// `kdprune merge`.
fn cmd_merge(manifest: PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest(&manifest)?;
    let summary = kdprune::experiment::distributed::merge(&manifest)?;
    let results = kdprune::results::read(&manifest.output)?;
    let files = kdprune::report::write(&manifest.output, &manifest.name, &results)?;
    if json {
        print_json(serde_json::json!({
            "shards": summary.shards,
            "merged": summary.merged,
            "already": summary.already,
            "results_path": summary.results_path,
            "report_path": files.markdown,
        }))?;
    } else {
        out!("{}", kdprune::report::accuracy_table(&results));
        out!(
            "{} shards merged: {} results added, {} there already; results in {}, report in {}",
            summary.shards,
            summary.merged,
            summary.already,
            summary.results_path.display(),
            files.markdown.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `kdprune run`.
fn cmd_run(
    manifest: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    shard: Option<kdprune::shard::Shard>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest(&manifest)?;
    let summary = kdprune::experiment::run(
        &manifest,
        &kdprune::experiment::RunOptions { plugin_dirs, shard },
    )?;
    // A shard reports its own share, in its own folder.
    let report_dir = summary
        .results_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.output.clone());
    let files = kdprune::report::write(&report_dir, &manifest.name, &summary.results)?;
    let report = kdprune::report::accuracy_table(&summary.results);
    let report_path = files.markdown.clone();
    if json {
        print_json(serde_json::json!({
            "ran": summary.ran,
            "skipped": summary.skipped,
            "failed": summary.failed,
            "results_path": summary.results_path,
            "report_path": report_path,
            "teacher_test_accuracy": summary.teacher_test_accuracy,
            "time": summary.time,
            "results": summary.results,
        }))?;
    } else {
        out!("{report}");
        out!(
            "{} cells run, {} already done; results in {}, report in {} and {}",
            summary.ran,
            summary.skipped,
            summary.results_path.display(),
            report_path.display(),
            files.html.display()
        );
        let t = summary.time;
        if summary.ran > 0 {
            out!(
                "time: {:.1} s in all; training {:.1} s ({:.0} %), teacher {:.1} s, dynamics {:.1} s, scoring {:.1} s, the rest (data, plugins, writing) {:.1} s",
                t.total,
                t.training,
                100.0 * t.training / t.total.max(1e-9),
                t.teacher,
                t.dynamics,
                t.scoring,
                (t.total - t.training - t.teacher - t.dynamics - t.scoring).max(0.0)
            );
        }
    }
    if summary.failed > 0 {
        eprintln!(
            "error: {} cell(s) failed in their plugin and were skipped; see {}",
            summary.failed,
            manifest.output.join("failures.jsonl").display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `kdprune plugins`.
fn cmd_plugins(plugin_dirs: Vec<PathBuf>, verbose: bool, json: bool) -> anyhow::Result<ExitCode> {
    let dirs = kdprune::plugins::plugin_dirs(&[], &plugin_dirs);
    let registry = kdprune::plugins::Registry::load(&dirs)?;
    if json {
        let listed: Vec<serde_json::Value> = registry
            .plugins()
            .iter()
            .map(|p| {
                let d = &p.description;
                serde_json::json!({
                    "name": d.name,
                    "kind": d.kind.as_str(),
                    "version": d.version,
                    "file": p.file,
                    "source": p.source,
                    "description": d.description,
                    "params": kdprune::plugins::describe_params(&d.params),
                    "inputs": d.inputs.iter().map(|i| serde_json::json!({"name": i.name.to_string(), "required": i.required})).collect::<Vec<_>>(),
                    "high_is_hard": d.high_is_hard,
                    "budget_independent": d.budget_independent,
                    "default_policy": d.default_policy,
                    "score_meaning": d.score_meaning,
                })
            })
            .collect();
        let problems: Vec<String> = registry.problems.iter().map(|p| p.to_string()).collect();
        print_json(serde_json::json!({ "plugins": listed, "problems": problems }))?;
        return Ok(if registry.plugins().is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    for p in registry.plugins() {
        let d = &p.description;
        out!(
            "{}\t{}\t{}\t{}",
            d.name,
            d.kind.as_str(),
            d.version,
            p.file.display()
        );
        if verbose {
            out!("    {}", d.description);
            match &p.source {
                Some(source) => out!("    source {source} (what its results are keyed by)"),
                None => out!("    no source hash declared: its results are keyed by its library file's SHA-256"),
            }
            for (name, text) in kdprune::plugins::describe_params(&d.params) {
                out!("    param {name}: {text}");
            }
            if !d.inputs.is_empty() {
                let inputs: Vec<String> = d
                    .inputs
                    .iter()
                    .map(|i| {
                        let optional = if i.required { "" } else { " (optional)" };
                        format!("{}{optional}", i.name)
                    })
                    .collect();
                out!("    inputs: {}", inputs.join(", "));
            }
            if d.kind == kdprune_plugin_api::PluginKind::PruningMethod {
                let meaning = if d.score_meaning.is_empty() {
                    String::new()
                } else {
                    format!(": {}", d.score_meaning)
                };
                out!(
                    "    a high score means {}{meaning}; {}; default policy {}",
                    if d.high_is_hard { "hard" } else { "easy" },
                    if d.budget_independent {
                        "scored once for every keep"
                    } else {
                        "scored per keep"
                    },
                    d.default_policy.as_deref().unwrap_or("hardest"),
                );
            }
        }
    }
    for problem in &registry.problems {
        eprintln!("warning: {problem}");
    }
    if registry.plugins().is_empty() {
        eprintln!(
            "no plugins found in {} folder(s); pass --plugin-dir or set KDPRUNE_PLUGIN_PATH",
            dirs.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `kdprune check`.
fn cmd_check(manifest: PathBuf, plugin_dirs: Vec<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let m = load_manifest(&manifest)?;
    let report = kdprune::experiment::check(
        &m,
        &kdprune::experiment::RunOptions {
            plugin_dirs,
            shard: None,
        },
    )?;
    if json {
        let mut facts = report.facts;
        facts["ok"] = true.into();
        print_json(facts)?;
        return Ok(ExitCode::SUCCESS);
    }
    for line in &report.lines {
        out!("  {line}");
    }
    out!(
        "{}: ok — plugins, data, teacher and output checked as `run` does before training ({} method(s), {} alpha(s), {} seed(s))",
        manifest.display(),
        m.prune.len(),
        m.distillation.alphas.len(),
        m.seeds.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// What `kdprune bench` measures (its flags).
#[derive(clap::Args)]
struct BenchOptions {
    /// Student epochs per measurement; the fastest epoch gives the rate.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Time the student only (no teacher, no KD step).
    #[arg(long)]
    student_only: bool,
    /// Time the teacher's soft-label pass only (best of 3 passes).
    #[arg(long)]
    teacher_only: bool,
    /// Time the `[dynamics]` proxy with and without recording every quantity instead.
    #[arg(long)]
    dynamics: bool,
    /// Also time the KD step at α = 0, 0.1, 0.5, 0.9, 1 (subnormals flushed and kept).
    #[arg(long)]
    alphas: bool,
    /// Also report where the label-only training's time goes, per layer kind and pass.
    #[arg(long)]
    layers: bool,
    /// Train on the first N training examples only (a shorter measurement).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

/// `kdprune bench`.
fn cmd_bench(
    manifest: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    options: BenchOptions,
) -> anyhow::Result<ExitCode> {
    let BenchOptions {
        epochs,
        student_only,
        teacher_only,
        dynamics,
        alphas,
        layers,
        limit,
    } = options;
    let manifest = load_manifest(&manifest)?;
    if teacher_only {
        let report = kdprune::bench::teacher_pass(&manifest, &plugin_dirs, 3)?;
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if dynamics {
        let report = kdprune::bench::dynamics(&manifest)?;
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let report = kdprune::bench::run(
        &manifest,
        &plugin_dirs,
        kdprune::bench::StudentBench {
            epochs,
            with_teacher: !student_only,
            alphas,
            layers,
            limit,
        },
    )?;
    out!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
