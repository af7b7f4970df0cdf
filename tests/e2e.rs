//! End-to-end tests: real plugin libraries built as cdylibs and loaded from a temporary folder,
//! the real ONNX Runtime (from the set-up's .venv), real MNIST digits and the ONNX model zoo's
//! MNIST CNN as teacher (fixtures in tests/fixtures, see its README for licences).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kdprune::manifest;
use kdprune::plugins::Registry;
use kdprune_plugin_api::PluginKind;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Builds the plugin crates once per test process (a no-op when cargo finds them fresh) and
/// returns the folder holding the libraries.
fn built_plugins() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .current_dir(repo_root())
            // Every plugin crate of the workspace (plugins/* and the faulty fixture).
            .args(["build", "--workspace", "--lib", "--exclude", "kdprune"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the plugins failed");
        target_dir().join("debug")
    })
}

fn lib_name(stem: &str) -> String {
    format!(
        "{}{stem}.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    )
}

/// A fresh folder holding copies of the named plugin libraries (e.g. `kdprune_random`).
fn plugin_folder(stems: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for stem in stems {
        let name = lib_name(stem);
        std::fs::copy(built_plugins().join(&name), dir.path().join(&name))
            .unwrap_or_else(|e| panic!("copy {name}: {e}"));
    }
    dir
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn kdprune(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kdprune"))
        .args(args)
        .env_remove("KDPRUNE_PLUGIN_PATH")
        .env("KDPRUNE_LOG", "warn")
        .output()
        .expect("kdprune runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The last line of stderr that says `error:` (what the user reads).
fn error_line(out: &Output) -> String {
    out.stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in stderr:\n{}", out.stderr))
        .to_string()
}

/// A manifest on the MNIST 5k fixture with the zoo teacher; `extra` is appended (more
/// `[[prune]]` entries, say) and `replace` edits lines of the base text.
fn mnist_manifest(
    dir: &Path,
    plugins: &Path,
    body_prune: &str,
    replace: &[(&str, &str)],
) -> PathBuf {
    let fx = fixtures();
    let mut text = format!(
        r#"name = "mnist-5k"
seeds = [0]
output = "{out}"
plugin_dirs = ["{plugins}"]

[data]
format = "csv"
train = "{fx}/mnist-5k.csv.gz"
label = -1
header = false
sample_shape = [1, 28, 28]
holdout = 0.2

[data.normalise]
scale = 255.0
mean = [0.1307]
std = [0.3081]

[teacher]
onnx = "{fx}/mnist-zoo-cntk-opset7.onnx"
batch_size = 64

[teacher.preprocess]
layout = "nchw"

[student]
hidden = [64]
epochs = 4
batch_size = 64
lr = 0.05

[distillation]
alphas = [0.0, 0.5]
temperature = 4.0

{body_prune}
"#,
        out = dir.join("out").display(),
        plugins = plugins.display(),
        fx = fx.display(),
    );
    for (from, to) in replace {
        assert!(text.contains(from), "manifest has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join("manifest.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// The 5 000 MNIST images of tests/fixtures, in file order, as `[1, 28, 28]` examples.
fn mnist_5k_csv() -> kdprune::data::Dataset {
    kdprune::data::read_csv(
        &fixtures().join("mnist-5k.csv.gz"),
        &kdprune::data::CsvOptions {
            label: kdprune::data::LabelColumn::Index(-1),
            header: Some(false),
            delimiter: b',',
            classes: None,
            num_classes: None,
            sample_shape: Some(vec![1, 28, 28]),
        },
    )
    .unwrap()
    .0
}

/// The `[teacher]` block of [`mnist_manifest`], for tests that replace it.
fn zoo_teacher_block() -> String {
    format!(
        "[teacher]\nonnx = \"{}/mnist-zoo-cntk-opset7.onnx\"\nbatch_size = 64\n\n[teacher.preprocess]\nlayout = \"nchw\"\n",
        fixtures().display()
    )
}

/// Runs an exported student through ONNX Runtime on `x` `[B, D]` (examples of `sample_shape`)
/// and checks its logits against the trainer's, `ours` `[B, C]`, within 1e-4 (relative to
/// magnitudes above 1).
fn assert_onnx_matches(
    model: &Path,
    x: ndarray::ArrayView2<'_, f32>,
    sample_shape: &[usize],
    ours: &ndarray::Array2<f32>,
) {
    let mut onnx =
        kdprune::teacher::onnx::OnnxTeacher::open(&kdprune::teacher::onnx::OnnxOptions {
            model,
            input: None,
            output: None,
            provider: kdprune::teacher::spec::Provider::Cpu,
            allow_cpu_fallback: false,
            ort_library: None,
            threads: 1,
            spin: false,
            layout: kdprune::teacher::spec::Layout::Nchw,
            sample_shape,
            num_classes: ours.ncols(),
        })
        .unwrap();
    let x = x.as_standard_layout();
    let theirs = onnx.run(x.as_slice().unwrap(), x.nrows()).unwrap();
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-4,
        "ONNX Runtime vs trainer: worst difference {worst}"
    );
}

const RANDOM_PRUNE: &str = "[[prune]]\nmethod = \"random\"\nkeep = [0.3, 1.0]\n";

fn results_lines(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("out/results.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn plugins_load_from_a_folder_and_other_files_are_reported() {
    let folder = plugin_folder(&[
        "kdprune_random",
        "kdprune_teacher_el2n",
        "kdprune_nearest_centroid",
    ]);
    // A real shared library that is not a plugin, and a file that is not a library at all.
    let c_file = folder.path().join("hello.c");
    std::fs::write(&c_file, "int hello(void) { return 42; }\n").unwrap();
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(folder.path().join(lib_name("hello")))
        .arg(&c_file)
        .status()
        .expect("cc runs");
    assert!(status.success());
    std::fs::write(folder.path().join(lib_name("junk")), b"not an ELF file").unwrap();

    let registry = Registry::load(&[folder.path().to_path_buf()]).expect("registry");
    let names: Vec<&str> = registry
        .plugins()
        .iter()
        .map(|p| p.description.name.as_str())
        .collect();
    assert_eq!(names, vec!["nearest-centroid", "random", "teacher-el2n"]);
    let random = registry.get("random", PluginKind::PruningMethod).unwrap();
    assert_eq!(random.description.version, "0.2.0");
    assert!(random.file.starts_with(folder.path()));
    assert!(registry.get("random", PluginKind::Teacher).is_err());

    assert_eq!(registry.problems.len(), 2, "{:?}", registry.problems);
    let hello = registry
        .problems
        .iter()
        .find(|p| p.file.ends_with(lib_name("hello")))
        .unwrap();
    assert!(
        hello.message.contains("not a kdprune plugin"),
        "{}",
        hello.message
    );
    let junk = registry
        .problems
        .iter()
        .find(|p| p.file.ends_with(lib_name("junk")))
        .unwrap();
    assert!(
        junk.message.contains("cannot be opened"),
        "{}",
        junk.message
    );

    let out = kdprune(&["plugins", "--plugin-dir", folder.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("random\t"))
        .expect("random listed");
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(&fields[..3], &["random", "pruning-method", "0.2.0"]);
    assert!(fields[3].ends_with(&lib_name("kdprune_random")));
    assert!(
        out.stderr.contains("not a kdprune plugin"),
        "{}",
        out.stderr
    );
}

#[test]
fn two_plugins_with_one_name_are_an_error_naming_both_files() {
    let folder = plugin_folder(&["kdprune_random"]);
    std::fs::copy(
        folder.path().join(lib_name("kdprune_random")),
        folder.path().join(lib_name("kdprune_random_copy")),
    )
    .unwrap();
    let err = Registry::load(&[folder.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("two plugins are named \"random\"")
            && err.contains(&lib_name("kdprune_random"))
            && err.contains(&lib_name("kdprune_random_copy")),
        "{err}"
    );
}

/// Builds the random plugin against a copy of plugin-api whose version or layout differs,
/// in a workspace of its own, and checks the host refuses it with one clear line.
#[test]
fn a_plugin_built_against_another_plugin_api_is_refused_clearly() {
    let root = repo_root();
    let work = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for (case, version, change_layout) in [("version", "0.1.0", false), ("layout", "0.2.0", true)] {
        let ws = work.path().join(case);
        let api = ws.join("plugin-api");
        let plugin = ws.join("random");
        std::fs::create_dir_all(api.join("src")).unwrap();
        std::fs::create_dir_all(plugin.join("src")).unwrap();
        let sources: Vec<String> = std::fs::read_dir(root.join("plugin-api/src"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for f in &sources {
            let f = f.as_str();
            let mut text = std::fs::read_to_string(root.join("plugin-api/src").join(f)).unwrap();
            if change_layout && f == "types.rs" {
                text = text.replacen(
                    "pub struct PluginError {\n    pub message: RString,",
                    "pub struct PluginError {\n    pub message: RString,\n    pub code: u32,",
                    1,
                );
                text = text.replacen(
                    "message: RString::from(message.into()),",
                    "message: RString::from(message.into()),\n            code: 0,",
                    1,
                );
            }
            std::fs::write(api.join("src").join(f), text).unwrap();
        }
        std::fs::write(
            api.join("Cargo.toml"),
            format!(
                "[package]\nname = \"kdprune-plugin-api\"\nversion = \"{version}\"\nedition = \"2021\"\n\n[dependencies]\nabi_stable = \"0.11.3\"\nbytemuck = \"1\"\nhalf = {{ version = \"2\", features = [\"bytemuck\"] }}\n"
            ),
        )
        .unwrap();
        std::fs::copy(
            root.join("plugins/random/src/lib.rs"),
            plugin.join("src/lib.rs"),
        )
        .unwrap();
        std::fs::write(
            plugin.join("Cargo.toml"),
            "[package]\nname = \"kdprune-plugin-random\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\nname = \"kdprune_random\"\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nkdprune-plugin-api = { path = \"../plugin-api\" }\n",
        )
        .unwrap();
        std::fs::write(
            ws.join("Cargo.toml"),
            "[workspace]\nresolver = \"2\"\nmembers = [\"plugin-api\", \"random\"]\n",
        )
        .unwrap();
        // Reuse this workspace's lock file so no index lookup is needed.
        std::fs::copy(root.join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
        let target = target_dir().join("abi-mismatch-test");
        let status = Command::new(env!("CARGO"))
            .current_dir(&ws)
            .env("CARGO_TARGET_DIR", &target)
            // No debug info: these plugins are only loaded, and CI's disk is small.
            .env("CARGO_PROFILE_DEV_DEBUG", "0")
            .args(["build", "--quiet", "-p", "kdprune-plugin-random"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the {case} plugin failed");
        let folder = work.path().join(format!("plugins-{case}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(
            target.join("debug").join(lib_name("kdprune_random")),
            folder.join(lib_name("kdprune_random")),
        )
        .unwrap();
        let registry = Registry::load(std::slice::from_ref(&folder)).unwrap();
        assert!(registry.plugins().is_empty());
        assert_eq!(registry.problems.len(), 1);
        let line = registry.problems[0].to_string();
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(
            line.contains("rebuild the plugin against kdprune-plugin-api 0.2.0"),
            "{line}"
        );
        if case == "version" {
            assert!(line.contains("0.1.0"), "{line}");
        }
        lines.push(line);
    }
    eprintln!("{lines:#?}");
}

#[test]
fn zoo_teacher_soft_labels_match_python_onnxruntime() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("zoo-reference.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = mnist_manifest(dir.path(), dir.path(), RANDOM_PRUNE, &[]);
    let m = manifest::load(&path).unwrap();
    let (train, test) = kdprune::data::load(&m.data, 0).unwrap();
    // The reference rows are positions in the CSV file: rebuild the full file order.
    let csv = mnist_5k_csv();
    assert_eq!(train.len() + test.len(), csv.len());
    let rows: Vec<u32> = reference["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_u64().unwrap() as u32)
        .collect();
    let subset = csv.subset(&rows);
    let registry = Registry::default();
    let spec = m.teacher().unwrap();
    let mut teacher =
        kdprune::teacher::Teacher::new(spec, &registry, &csv, &dir.path().join("cache"), 0)
            .unwrap();
    let out = teacher.logits(&subset, "reference").unwrap();
    assert_eq!(out.kind, kdprune::teacher::spec::OutputKind::Logits);
    for (i, r) in reference["rows"].as_array().unwrap().iter().enumerate() {
        let expected: Vec<f64> = r["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (j, &e) in expected.iter().enumerate() {
            let got = out.logits[[i, j]] as f64;
            assert!(
                (got - e).abs() <= 1e-5 * e.abs().max(1.0),
                "row {i} logit {j}: {got} vs {e}"
            );
        }
        for (tau, field) in [(1.0, "soft_t1"), (4.0, "soft_t4"), (1000.0, "soft_t1000")] {
            let soft = out.probabilities(tau);
            for (j, v) in r[field].as_array().unwrap().iter().enumerate() {
                let e = v.as_f64().unwrap();
                assert!(
                    (soft[[i, j]] as f64 - e).abs() < 1e-5,
                    "row {i} {field}[{j}]: {} vs {e}",
                    soft[[i, j]]
                );
            }
        }
    }
}

/// A fixed-batch model labelling a whole set runs one single-thread session per thread, the
/// runs of a batch split between them: the outputs are those of one session, in order.
#[test]
fn a_fixed_batch_teacher_on_several_sessions_gives_one_sessions_outputs() {
    let images = mnist_5k_csv();
    // 301 images: the lanes' shares differ by one run.
    let x = images.features.slice(ndarray::s![..301, ..]).to_owned();
    let model = fixtures().join("mnist-zoo-cntk-opset7.onnx");
    let open = |threads: usize, spin: bool| {
        kdprune::teacher::onnx::OnnxTeacher::open(&kdprune::teacher::onnx::OnnxOptions {
            model: &model,
            input: None,
            output: None,
            provider: kdprune::teacher::spec::Provider::Cpu,
            allow_cpu_fallback: false,
            ort_library: None,
            threads,
            spin,
            layout: kdprune::teacher::spec::Layout::Nchw,
            sample_shape: &[1, 28, 28],
            num_classes: 10,
        })
        .unwrap()
    };
    let mut one = open(1, false);
    let mut three = open(3, true);
    assert_eq!((one.lanes(), three.lanes()), (1, 3));
    // Online distillation (no spinning) keeps one session with its threads.
    assert_eq!(open(3, false).lanes(), 1);
    let x = x.as_slice().unwrap();
    let expected = one.run(x, 301).unwrap();
    assert_eq!(expected.len(), 301 * 10);
    assert_eq!(three.run(x, 301).unwrap(), expected);
    assert_eq!(three.run(&x[..2 * 784], 2).unwrap(), expected[..20]);
}

#[test]
fn soft_labels_are_cached_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("zoo.onnx");
    std::fs::copy(fixtures().join("mnist-zoo-cntk-opset7.onnx"), &model).unwrap();
    let path = mnist_manifest(
        dir.path(),
        dir.path(),
        RANDOM_PRUNE,
        &[(
            &format!("{}/mnist-zoo-cntk-opset7.onnx", fixtures().display()),
            model.to_str().unwrap(),
        )],
    );
    let m = manifest::load(&path).unwrap();
    let (train, _) = kdprune::data::load(&m.data, 0).unwrap();
    let small = train.subset(&(0..50).collect::<Vec<_>>());
    let registry = Registry::default();
    let cache = dir.path().join("cache");
    let label = |m: &kdprune::manifest::Manifest| {
        let mut t =
            kdprune::teacher::Teacher::new(m.teacher().unwrap(), &registry, &train, &cache, 0)
                .unwrap();
        t.logits(&small, "small").unwrap()
    };
    let first = label(&m);
    assert!(!first.cached);
    let second = label(&m);
    assert!(second.cached, "the second run reads the cache");
    assert_eq!(first.logits, second.logits);

    // The cache is a safetensors file (scores [50, 10], the output kind and a checksum in its
    // metadata); a value changed in place is caught by the checksum and rebuilt.
    let files: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    {
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let scores = st.tensor("scores").unwrap();
        assert_eq!(scores.shape(), [50, 10]);
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["output_kind"], "logits");
    }
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&files[0], &bytes).unwrap();
    assert!(!label(&m).cached, "an altered cache file is rebuilt");
    assert!(label(&m).cached);

    // Another preprocessing is another key.
    let mut other = m.clone();
    other.teachers[0].preprocess.scale = 2.0;
    assert!(!label(&other).cached);

    // A changed model is another key. Byte 5364 is the low mantissa byte of one weight of
    // Parameter193 (packed floats from offset 1364), so the model still loads.
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[5364] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let changed = label(&m);
    assert!(!changed.cached, "a changed model runs the teacher again");
}

#[test]
fn mnist_run_end_to_end_resumes_and_keeps_results_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&["kdprune_random", "kdprune_faulty"]);
    let path = mnist_manifest(dir.path(), plugins.path(), RANDOM_PRUNE, &[]);
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("| random | 0.30 |"), "{}", out.stdout);
    assert!(
        out.stdout.contains("4 cells run, 0 already done"),
        "{}",
        out.stdout
    );

    let results = results_lines(dir.path());
    assert_eq!(results.len(), 4);
    for r in &results {
        let keep = r["keep"].as_f64().unwrap();
        let kept = r["kept"].as_u64().unwrap() as usize;
        assert_eq!(r["train_size"], 4000);
        assert_eq!(kept, (keep * 4000.0).round() as usize);
        let indices = kdprune::results::read_npy_u32(
            &dir.path().join("out").join(r["indices"].as_str().unwrap()),
        )
        .unwrap();
        assert_eq!(indices.len(), kept);
        assert!(indices.windows(2).all(|w| w[0] < w[1]) && indices.iter().all(|&i| i < 4000));
        let acc = r["test_accuracy"].as_f64().unwrap();
        // MNIST with 4000 (or 1200) digits and a small MLP: well above chance, below perfect.
        assert!(acc > 0.80 && acc < 1.0, "accuracy {acc} for {r}");
        // A cell records the teacher it distilled from, and that teacher's accuracy.
        let distilled = r["alpha"].as_f64().unwrap() > 0.0;
        assert_eq!(r["teacher"].is_null(), !distilled);
        assert_eq!(r["teacher_test_accuracy"].is_null(), !distilled);
        if distilled {
            assert!(r["teacher_test_accuracy"].as_f64().unwrap() > 0.95);
        }
    }

    // Same seed, same result: a second output folder gives identical accuracies.
    let again = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("0 cells run, 4 already done"),
        "{}",
        again.stdout
    );
    let before = std::fs::read(dir.path().join("out/results.jsonl")).unwrap();

    // A plugin that panics: one error line naming it, non-zero exit, results intact.
    let panics = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"faulty-panics\"\nkeep = [0.5]\n",
        &[],
    );
    let out = kdprune(&["run", panics.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let line = error_line(&out);
    assert!(
        line.contains("faulty-panics")
            && line.contains("panicked")
            && line.contains("deliberate panic"),
        "{line}"
    );

    // A plugin that returns an index out of range.
    let oob = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"faulty-out-of-range\"\nkeep = [0.5]\n",
        &[],
    );
    let out = kdprune(&["run", oob.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let line = error_line(&out);
    assert!(
        line.contains("faulty-out-of-range") && line.contains("index 4000, out of range"),
        "{line}"
    );

    // A corrupt data file: the error names it.
    let corrupt = dir.path().join("corrupt.csv.gz");
    let good = std::fs::read(fixtures().join("mnist-5k.csv.gz")).unwrap();
    std::fs::write(&corrupt, &good[..good.len() / 2]).unwrap();
    let bad_data = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[(
            &format!("{}/mnist-5k.csv.gz", fixtures().display()),
            corrupt.to_str().unwrap(),
        )],
    );
    let out = kdprune(&["run", bad_data.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let line = error_line(&out);
    assert!(
        line.contains("corrupt.csv.gz") && line.contains("truncated"),
        "{line}"
    );

    assert_eq!(
        std::fs::read(dir.path().join("out/results.jsonl")).unwrap(),
        before,
        "results intact"
    );
}

#[test]
fn same_seed_gives_the_same_result() {
    let plugins = plugin_folder(&["kdprune_random"]);
    let mut accuracies = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let path = mnist_manifest(
            dir.path(),
            plugins.path(),
            "[[prune]]\nmethod = \"random\"\nkeep = [0.2]\n",
            &[
                ("alphas = [0.0, 0.5]", "alphas = [0.5]"),
                ("epochs = 4", "epochs = 2"),
            ],
        );
        let out = kdprune(&["run", path.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let r = &results_lines(dir.path())[0];
        let indices =
            std::fs::read(dir.path().join("out").join(r["indices"].as_str().unwrap())).unwrap();
        accuracies.push((r["test_accuracy"].as_f64().unwrap(), indices));
    }
    assert_eq!(accuracies[0], accuracies[1]);
}

#[test]
fn teacher_plugin_and_soft_label_scorer_run() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&["kdprune_teacher_el2n", "kdprune_nearest_centroid"]);
    let teacher_block = zoo_teacher_block();
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"teacher-el2n\"\nkeep = [0.3]\npolicy = \"stratified\"\n",
        &[
            (
                &teacher_block,
                "[teacher]\nplugin = \"nearest-centroid\"\nparams = { scale = 255.0 }\n",
            ),
            ("epochs = 4", "epochs = 2"),
        ],
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let results = results_lines(dir.path());
    assert_eq!(results.len(), 2);
    let distilled = results.iter().find(|r| r["alpha"] == 0.5).unwrap();
    let teacher_acc = distilled["teacher_test_accuracy"].as_f64().unwrap();
    // Nearest class centroid on MNIST is a weak but real classifier (about 80 %).
    assert!(teacher_acc > 0.7 && teacher_acc < 0.95, "{teacher_acc}");
    // Stratified keeps 30 % of each class (4000 training digits, about 400 per class).
    let r = &results[0];
    assert_eq!(r["policy"], "stratified");
    assert_eq!(r["kept"], 1200);
}

#[test]
fn manifest_errors_name_the_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&["kdprune_random"]);
    // An unknown field, with its line and column.
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[("epochs = 4", "epochs = 4\nepohcs = 5")],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains("manifest.toml:29:1:") && line.contains("unknown field `epohcs`"),
        "{line}"
    );

    // A precision that is not one, named with the ones there are; bf16 accepted where the
    // CPU has AVX512-BF16 and refused, at the field, where it has not.
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[("epochs = 4", "epochs = 4\nprecision = \"fp8\"")],
    );
    let line = error_line(&kdprune(&["check", p.to_str().unwrap()]));
    assert!(
        line.contains("manifest.toml:29:13:") && line.contains("expected `f32` or `bf16`"),
        "{line}"
    );
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[("epochs = 4", "epochs = 4\nprecision = \"bf16\"")],
    );
    let out = kdprune(&["check", p.to_str().unwrap()]);
    if let Some(rate) = kdprune::train::kernels::gemm_bf16::rate_against_f32() {
        assert_eq!(out.code, 0, "{}", out.stderr);
        // Accepted, and warned against where this CPU's bf16 instructions do not pay (half
        // the f32 rate on a Xeon with AMX, twice it on an AMD EPYC: far from the threshold).
        let warned = out.stdout.contains("bf16 training will be slower than f32");
        assert_eq!(
            warned,
            rate < kdprune::train::kernels::gemm_bf16::PAYING_RATE,
            "rate {rate:.2}: {}",
            out.stdout
        );
    } else {
        assert!(
            error_line(&out).contains("needs a CPU with AVX-512 BF16"),
            "{}",
            out.stderr
        );
    }

    // keep outside (0, 1], located at the value.
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.5, 1.5]\n",
        &[],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains("keep = 1.5 is outside (0, 1]") && line.contains(":38:14:"),
        "{line}"
    );

    // alpha > 0 with no teacher.
    let fx = fixtures();
    let teacher_block = zoo_teacher_block();
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[(&teacher_block, "")],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains("alpha above 0 (or \"auto\") but there is no [teacher]"),
        "{line}"
    );

    // An α that is neither a number nor "auto", located at the value.
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[("alphas = [0.0, 0.5]", "alphas = [0.0, \"often\"]")],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains("alpha \"often\" is neither a number in [0, 1] nor \"auto\"")
            && line.contains(":33:16:"),
        "{line}"
    );

    // Two teachers of one name.
    let twice = format!(
        "[[teacher]]\nonnx = \"{0}/mnist-zoo-cntk-opset7.onnx\"\n[[teacher]]\nonnx = \"{0}/mnist-zoo-cntk-opset7.onnx\"\n",
        fx.display()
    );
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[(&teacher_block, &twice)],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains(
            "two teachers are named \"mnist-zoo-cntk-opset7\"; give each a distinct name"
        ),
        "{line}"
    );

    // An unknown method and an unknown parameter, found once plugins are loaded.
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"el2n\"\nkeep = [0.5]\n",
        &[],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains("no plugin named \"el2n\"") && line.contains("manifest.toml:36:1"),
        "{line}"
    );
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.5]\nparams = { sead = 3 }\n",
        &[],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains("no parameter \"sead\"") && line.contains("seed_offset"),
        "{line}"
    );

    // A teacher whose classes do not match the data.
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[("holdout = 0.2", "holdout = 0.2\nnum_classes = 12")],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains("has 10 classes but the data has 12"),
        "{line}"
    );

    // An input layout that does not fit the model.
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[("layout = \"nchw\"", "layout = \"flat\"")],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains("mnist-zoo-cntk-opset7.onnx") && line.contains("layout"),
        "{line}"
    );

    // ONNX Runtime named but missing.
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[(
            "batch_size = 64",
            "batch_size = 64\nort_library = \"/nonexistent/libonnxruntime.so\"",
        )],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains("ort_library") && line.contains("scripts/setup.sh"),
        "{line}"
    );

    // CUDA asked for where this build or machine cannot give it, without fallback.
    let p = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[("batch_size = 64", "batch_size = 64\nprovider = \"cuda\"")],
    );
    let line = error_line(&kdprune(&["run", p.to_str().unwrap()]));
    assert!(
        line.contains("CUDA") && line.contains("allow_cpu_fallback"),
        "{line}"
    );
}

/// A small CNN student with batch norm, AdamW, warm-up, clipping and augmentation trains to a
/// stated accuracy on real digits; its saved weights reload, and its ONNX export run by ONNX
/// Runtime gives the trainer's logits within 1e-4.
#[test]
fn cnn_student_trains_saves_and_exports_to_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&["kdprune_random"]);
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [1.0]\n",
        &[
            ("hidden = [64]", "layers = [\"conv 8 k3 p1\", \"bn\", \"relu\", \"maxpool 2\", \"conv 16 k3 p1\", \"bn\", \"relu\", \"maxpool 2\", \"dropout 0.1\"]\noptimizer = \"adamw\"\nwarmup_epochs = 1\nclip_grad_norm = 5.0\nsave = true\naugment = { crop_padding = 2 }"),
            ("lr = 0.05", "lr = 0.003"),
            ("epochs = 4", "epochs = 5"),
            ("alphas = [0.0, 0.5]", "alphas = [0.0]"),
        ],
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let results = results_lines(dir.path());
    let acc = results[0]["test_accuracy"].as_f64().unwrap();
    // Stated in docs/performance.md: a 2-conv CNN on 4000 MNIST digits, 5 epochs.
    eprintln!("CNN test accuracy: {acc}");
    assert!(acc > 0.94, "CNN accuracy {acc}");

    let key = results[0]["key"].as_str().unwrap();
    let students = dir.path().join("out/students");
    let m = manifest::load(&path).unwrap();
    let mut net = kdprune::train::Network::build(&m.student.layers, &[1, 28, 28], 10, 0).unwrap();
    net.load_safetensors(&students.join(format!("{key}.safetensors")))
        .unwrap();
    let (_, test) = kdprune::data::load(&m.data, 0).unwrap();
    let norm = match &m.data.normalise {
        kdprune::data::spec::NormaliseSpec::Fixed(n) => n.clone(),
        _ => unreachable!("the manifest gives fixed statistics"),
    };
    let x = norm.apply(test.features.view());
    let mut reloaded = net;
    let reloaded_acc = kdprune::train::evaluate(&mut reloaded, x.view(), &test.labels);
    assert_eq!(reloaded_acc, acc, "reloaded weights give the same accuracy");

    let rows = x.slice(ndarray::s![..64, ..]).to_owned();
    let ours = reloaded.forward(rows.view(), kdprune::train::Mode::Eval);
    assert_onnx_matches(
        &students.join(format!("{key}.onnx")),
        rows.view(),
        &[1, 28, 28],
        &ours,
    );
}

/// Distillation under augmentation: cached soft labels (of the un-augmented images) and the
/// teacher run on every augmented batch both train; they give different students because the
/// online soft labels follow the crops.
#[test]
fn online_and_cached_distillation_under_augmentation() {
    let plugins = plugin_folder(&["kdprune_random"]);
    let mut outcomes = Vec::new();
    for mode in ["cached", "online"] {
        let dir = tempfile::tempdir().unwrap();
        let path = mnist_manifest(
            dir.path(),
            plugins.path(),
            "[[prune]]\nmethod = \"random\"\nkeep = [0.5]\n",
            &[
                (
                    "hidden = [64]",
                    &format!(
                        "hidden = [64]\naugment = {{ crop_padding = 2, teacher = \"{mode}\" }}"
                    ),
                ),
                ("alphas = [0.0, 0.5]", "alphas = [0.5]"),
                ("epochs = 4", "epochs = 2"),
            ],
        );
        let out = kdprune(&["run", path.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{mode}: {}", out.stderr);
        let r = &results_lines(dir.path())[0];
        let acc = r["test_accuracy"].as_f64().unwrap();
        assert!(acc > 0.8, "{mode}: accuracy {acc}");
        outcomes.push(acc);
    }
    assert_ne!(
        outcomes[0], outcomes[1],
        "online soft labels change training"
    );

    // Online without augmentation is refused with a reason.
    let dir = tempfile::tempdir().unwrap();
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[(
            "hidden = [64]",
            "hidden = [64]\naugment = { teacher = \"online\" }",
        )],
    );
    let line = error_line(&kdprune(&["run", path.to_str().unwrap()]));
    assert!(line.contains("without crop_padding or flip"), "{line}");
}

/// A small ResNet for 32×32 colour images, declared as in a manifest, exports to ONNX
/// (residual Add, strided 1×1 shortcuts, batch norm, average and global pooling) and ONNX
/// Runtime gives the trainer's logits within 1e-4.
#[test]
fn resnet_for_32x32_images_exports_to_onnx() {
    use kdprune::train::spec::parse_layer;
    let specs: Vec<_> = [
        "conv 8",
        "bn",
        "relu",
        "res 8",
        "res 16 s2",
        "avgpool 2",
        "res 16",
        "gap",
    ]
    .iter()
    .map(|s| parse_layer(s).unwrap())
    .collect();
    let mut net = kdprune::train::Network::build(&specs, &[3, 32, 32], 10, 7).unwrap();
    let x = ndarray::Array2::from_shape_fn((6, 3 * 32 * 32), |(i, j)| {
        ((i * 31 + j * 17) % 23) as f32 / 23.0 - 0.5
    });
    let y = [0u32, 1, 2, 3, 4, 5];
    let kd = kdprune::train::Kd {
        alpha: kdprune::train::kd::Alpha::new(0.0).unwrap(),
        temperature: kdprune::train::kd::Temperature::new(1.0).unwrap(),
    };
    // Training-mode passes move the batch-norm running statistics off their defaults.
    for _ in 0..3 {
        net.loss_and_grad(x.view(), &y, None, kd);
    }
    let ours = net.forward(x.view(), kdprune::train::Mode::Eval);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("resnet.onnx");
    std::fs::write(&model, net.to_onnx()).unwrap();
    assert_onnx_matches(&model, x.view(), &[3, 32, 32], &ours);
}

/// Reads what `probe-inputs` wrote for input `name`: (dtype, shape, values as f32).
fn probe_dump(dir: &Path, name: &str) -> (String, Vec<usize>, Vec<f32>) {
    let stem = name.replace('/', "__");
    let text = std::fs::read_to_string(dir.join(format!("{stem}.txt")))
        .unwrap_or_else(|_| panic!("the plugin did not receive {name}"));
    let (dtype, shape) = text.split_once(' ').unwrap();
    let shape = shape.split(',').map(|d| d.parse().unwrap()).collect();
    let bytes = std::fs::read(dir.join(format!("{stem}.bin"))).unwrap();
    let values = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (dtype.to_string(), shape, values)
}

fn dynamics_files(cache: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cache)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("dynamics-"))
    });
    files.sort();
    files
}

/// A manifest whose one method is `probe-inputs` dumping into `dump`, with an MLP proxy of
/// 2 runs × 2 epochs, pass records at step 0 and at both epoch ends, the zoo teacher's
/// flattened last pooling as its embedding, and `dynamics_extra` added to `[dynamics]`.
fn probe_manifest(
    dir: &Path,
    plugins: &Path,
    cache: &Path,
    dump: &Path,
    dynamics_extra: &str,
) -> PathBuf {
    let body = format!(
        "[dynamics]\nruns = 2\ncheckpoints = [1, 2]\nearly_steps = [0]\n{dynamics_extra}\n\n[[prune]]\nmethod = \"probe-inputs\"\nkeep = [0.5]\nparams = {{ dump = \"{}\" }}\n",
        dump.display()
    );
    mnist_manifest(
        dir,
        plugins,
        &body,
        &[
            ("alphas = [0.0, 0.5]", "alphas = [0.0]"),
            ("epochs = 4", "epochs = 2"),
            (
                "batch_size = 64\n\n[teacher.preprocess]",
                "batch_size = 64\nembedding = \"Pooling160_Output_0_reshape0\"\n\n[teacher.preprocess]",
            ),
            (
                "plugin_dirs = [",
                &format!("cache_dir = \"{}\"\nplugin_dirs = [", cache.display()),
            ),
        ],
    )
}

#[test]
fn dynamics_and_embeddings_reach_a_plugin_with_values_computed_a_second_way() {
    let plugins = plugin_folder(&["kdprune_probe"]);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let dump = work.path().join("dump");
    let run_dir = work.path().join("a");
    std::fs::create_dir_all(&run_dir).unwrap();
    let path = probe_manifest(&run_dir, plugins.path(), &cache, &dump, "");
    let m = manifest::load(&path).unwrap();
    let summary = kdprune::experiment::run(&m, &Default::default()).unwrap();
    assert_eq!(summary.ran, 1);

    // The training set as the proxy saw it.
    let (train, _) = kdprune::data::load(&m.data, 0).unwrap();
    let norm = match &m.data.normalise {
        kdprune::data::spec::NormaliseSpec::Fixed(n) => n.clone(),
        other => panic!("{other:?}"),
    };
    let x = norm.apply(train.features.view());
    let (n, c) = (train.len(), train.num_classes);
    let (runs, epochs, records) = (2usize, 2usize, 3usize);

    let (dtype, shape, epochs_at) = probe_dump(&dump, "dynamics/pass/epochs");
    assert_eq!((dtype.as_str(), shape), ("f32", vec![records]));
    assert_eq!(epochs_at, vec![0.0, 1.0, 2.0]);
    for q in ["loss", "true_prob", "margin"] {
        let (dtype, shape, _) = probe_dump(&dump, &format!("dynamics/batch/{q}"));
        assert_eq!(
            (dtype.as_str(), shape),
            ("f16", vec![runs, epochs, n]),
            "{q}"
        );
    }
    let (dtype, shape, _) = probe_dump(&dump, "dynamics/batch/correct");
    assert_eq!((dtype.as_str(), shape), ("u8", vec![runs, epochs, n]));
    let (_, shape, logits) = probe_dump(&dump, "dynamics/pass/logits");
    assert_eq!(shape, vec![runs, records, n, c]);
    let pass = |q: &str| {
        let (dtype, shape, v) = probe_dump(&dump, &format!("dynamics/pass/{q}"));
        assert_eq!(shape, vec![runs, records, n], "{q}");
        assert_eq!(dtype, if q == "correct" { "u8" } else { "f16" }, "{q}");
        v
    };
    let (loss, true_prob, correct, margin, el2n, grad_norm) = (
        pass("loss"),
        pass("true_prob"),
        pass("correct"),
        pass("margin"),
        pass("el2n"),
        pass("grad_norm"),
    );
    let batch_loss = probe_dump(&dump, "dynamics/batch/loss").2;
    let close = |a: f32, b: f64, what: &str| {
        // f16 keeps 11 significant bits: relative error 2^-11, and logits near 0 absolutely.
        let tol = 2e-3 * b.abs().max(1.0);
        assert!((a as f64 - b).abs() <= tol, "{what}: {a} vs {b}");
    };

    for run in 0..runs {
        // The same proxy trained again by the students' trainer, without an observer.
        let set = kdprune::train::TrainSet {
            x: x.view(),
            sample_shape: &train.sample_shape,
            y: &train.labels,
            teacher: None,
            num_classes: c,
        };
        let kd = kdprune::train::Kd {
            alpha: kdprune::train::kd::Alpha::new(0.0).unwrap(),
            temperature: kdprune::train::kd::Temperature::new(1.0).unwrap(),
        };
        let (model, logs) = kdprune::train::train(
            &m.dynamics.proxy,
            &set,
            kd,
            m.dynamics.seed + run as u64,
            None,
        )
        .unwrap();
        // Mean of the per-example minibatch losses = the epoch's logged loss.
        for (e, log) in logs.iter().enumerate() {
            let at = (run * epochs + e) * n;
            let mean: f64 = batch_loss[at..at + n]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / n as f64;
            assert!(
                (mean - log.loss as f64).abs() < 2e-3 * log.loss as f64,
                "run {run} epoch {e}: {mean} vs {}",
                log.loss
            );
        }
        // The trained MLP 784-64-10 by hand from its weights: h = relu(x W1 + b1), s = h W2 + b2.
        let state = model.state();
        let mats: Vec<&ndarray::ArrayD<f32>> = state.iter().map(|(_, t)| *t).collect();
        let (w1, b1, w2, b2) = (mats[0], mats[1], mats[2], mats[3]);
        assert_eq!(w1.shape(), &[784, 64]);
        let h_of = |i: usize| -> Vec<f64> {
            (0..64)
                .map(|j| {
                    let mut acc = b1[[j]] as f64;
                    for k in 0..784 {
                        acc += x[[i, k]] as f64 * w1[[k, j]] as f64;
                    }
                    acc.max(0.0)
                })
                .collect()
        };
        let proxy_embedding = probe_dump(&dump, "embeddings/proxy");
        if run == 0 {
            assert_eq!(proxy_embedding.1, vec![n, 64]);
        }
        for i in (0..n).step_by(97) {
            let h = h_of(i);
            let s: Vec<f64> = (0..c)
                .map(|j| b2[[j]] as f64 + (0..64).map(|k| h[k] * w2[[k, j]] as f64).sum::<f64>())
                .collect();
            let y = train.labels[i] as usize;
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + s.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            let p: Vec<f64> = s.iter().map(|v| (v - lse).exp()).collect();
            let err = (0..c)
                .map(|j| (p[j] - if j == y { 1.0 } else { 0.0 }).powi(2))
                .sum::<f64>()
                .sqrt();
            let h_sq: f64 = h.iter().map(|v| v * v).sum();
            let other = (0..c)
                .filter(|&j| j != y)
                .map(|j| s[j])
                .fold(f64::NEG_INFINITY, f64::max);
            let best = (0..c).fold(0, |b, j| if s[j] > s[b] { j } else { b });
            let at = (run * records + 2) * n + i; // the record at the end of epoch 2
            for j in 0..c {
                close(logits[at * c + j], s[j], "logit");
            }
            close(loss[at], lse - s[y], "loss");
            close(true_prob[at], p[y], "true_prob");
            close(margin[at], s[y] - other, "margin");
            close(el2n[at], err, "el2n");
            close(grad_norm[at], err * (h_sq + 1.0).sqrt(), "grad_norm");
            assert_eq!(correct[at], (best == y) as u8 as f32, "correct at {i}");
            if run == 0 {
                for (k, &hk) in h.iter().enumerate() {
                    let e = proxy_embedding.2[i * 64 + k] as f64;
                    assert!(
                        (e - hk).abs() <= 1e-4 * hk.abs().max(1.0),
                        "embedding {i},{k}: {e} vs {hk}"
                    );
                }
            }
        }
    }
    let (_, shape, soft) = probe_dump(&dump, "soft_labels");
    assert_eq!(shape, vec![n, c]);
    assert!(soft
        .chunks(c)
        .all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-4));
    let (_, shape, teacher_embedding) = probe_dump(&dump, "embeddings/teacher");
    assert_eq!(
        shape,
        vec![n, 256],
        "the zoo CNN's last pooling, 16 x 4 x 4"
    );
    assert!(
        teacher_embedding.iter().all(|v| v.is_finite() && *v >= 0.0),
        "after ReLU and max pooling"
    );

    // The same request from another manifest and output folder: served by the cache.
    let files = dynamics_files(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    let dump2 = work.path().join("dump2");
    let run_dir2 = work.path().join("b");
    std::fs::create_dir_all(&run_dir2).unwrap();
    let path2 = probe_manifest(&run_dir2, plugins.path(), &cache, &dump2, "");
    let m2 = manifest::load(&path2).unwrap();
    let started = std::time::Instant::now();
    kdprune::experiment::run(&m2, &Default::default()).unwrap();
    let second = started.elapsed();
    assert_eq!(dynamics_files(&cache), files);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        written
    );
    for name in [
        "dynamics/pass/logits",
        "dynamics/batch/margin",
        "embeddings/proxy",
    ] {
        assert_eq!(probe_dump(&dump, name), probe_dump(&dump2, name), "{name}");
    }
    // A changed proxy spec trains again, into a file of its own.
    let dump3 = work.path().join("dump3");
    let run_dir3 = work.path().join("c");
    std::fs::create_dir_all(&run_dir3).unwrap();
    let path3 = probe_manifest(&run_dir3, plugins.path(), &cache, &dump3, "lr = 0.02");
    kdprune::experiment::run(&manifest::load(&path3).unwrap(), &Default::default()).unwrap();
    assert_eq!(dynamics_files(&cache).len(), 2);
    assert_ne!(
        probe_dump(&dump, "dynamics/pass/logits"),
        probe_dump(&dump3, "dynamics/pass/logits")
    );
    eprintln!("cached second run: {second:?}");
}

#[test]
fn dynamics_over_the_memory_limit_and_unknown_inputs_are_refused_before_any_work() {
    let plugins = plugin_folder(&["kdprune_probe"]);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let dump = work.path().join("dump");
    let path = probe_manifest(
        work.path(),
        plugins.path(),
        &cache,
        &dump,
        "max_memory = \"1MiB\"",
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let line = error_line(&out);
    assert!(
        line.contains("[dynamics]")
            && line.contains("max_memory = 1.0 MiB")
            && line.contains("need"),
        "{line}"
    );
    // Refused before the teacher ran or anything was recorded.
    assert!(dynamics_files(&cache).is_empty());
    assert!(!cache.exists() || std::fs::read_dir(&cache).unwrap().next().is_none());
    assert!(results_lines(work.path()).is_empty());

    // A plugin asking for an input no host has is refused alone, with one line; the other
    // plugin of its library still loads.
    let registry = Registry::load(&[plugins.path().to_path_buf()]).unwrap();
    assert!(registry
        .get("probe-inputs", PluginKind::PruningMethod)
        .is_ok());
    assert_eq!(registry.problems.len(), 1, "{:?}", registry.problems);
    let line = registry.problems[0].to_string();
    assert!(
        !line.contains('\n')
            && line.contains("\"dynamics/forgetting_events\"")
            && line.contains("dynamics/batch/margin")
            && line.contains("upgrade kdprune"),
        "{line}"
    );
}

/// Parameters given to some methods in the all-methods test, so that the teacher's side of
/// them runs too (and `external` has a command); every other pruning method of plugins/ runs
/// with its defaults.
fn method_params() -> Vec<(&'static str, String)> {
    vec![
        ("margin", "params = { source = \"teacher\" }\n".into()),
        (
            "prototypes",
            "params = { embedding = \"teacher\" }\n".into(),
        ),
        (
            "external",
            format!(
                "params = {{ command = [\"{}\", \"{}\"], inputs = [\"dynamics/batch/loss\"] }}\n",
                repo_root().join(".venv/bin/python").display(),
                repo_root()
                    .join("examples/python-method/class_balanced_loss.py")
                    .display()
            ),
        ),
    ]
}

/// Every pruning method the workspace builds (plugins/*; the test fixtures left out), so a
/// new plugin crate is tested without editing a list.
fn all_methods() -> Vec<String> {
    let registry = Registry::load(std::slice::from_ref(built_plugins())).unwrap();
    let fixture = |p: &kdprune::plugins::Plugin| {
        let file = p.file.to_string_lossy();
        file.contains("kdprune_faulty") || file.contains("kdprune_probe")
    };
    let mut names: Vec<String> = registry
        .plugins()
        .iter()
        .filter(|p| p.description.kind == PluginKind::PruningMethod && !fixture(p))
        .map(|p| p.description.name.clone())
        .collect();
    names.sort();
    names
}

fn all_methods_manifest(dir: &Path) -> PathBuf {
    let mut body = String::from("[dynamics]\nepochs = 3\nearly_steps = [0]\n\n");
    for method in all_methods() {
        let params = method_params();
        let extra = params
            .iter()
            .find(|(m, _)| *m == method)
            .map_or("", |(_, p)| p.as_str());
        body.push_str(&format!(
            "[[prune]]\nmethod = \"{method}\"\nkeep = [0.1, 0.3]\n{extra}\n"
        ));
    }
    mnist_manifest(
        dir,
        built_plugins(),
        &body,
        &[
            ("alphas = [0.0, 0.5]", "alphas = [0.0]"),
            ("epochs = 4", "epochs = 2"),
            (
                "batch_size = 64\n\n[teacher.preprocess]",
                "batch_size = 64\nembedding = \"Pooling160_Output_0_reshape0\"\n\n[teacher.preprocess]",
            ),
        ],
    )
}

#[test]
fn every_method_runs_and_scores_at_two_keep_fractions() {
    let dir = tempfile::tempdir().unwrap();
    let path = all_methods_manifest(dir.path());
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let results = results_lines(dir.path());
    let methods = all_methods();
    assert!(methods.len() >= 15, "{methods:?}");
    assert_eq!(results.len(), methods.len() * 2);
    for r in &results {
        let keep = r["keep"].as_f64().unwrap();
        assert_eq!(
            r["kept"].as_u64().unwrap(),
            (keep * 4000.0).round() as u64,
            "{r}"
        );
        let acc = r["test_accuracy"].as_f64().unwrap();
        // Above chance for all; the hardest 10 % under a strong teacher is mostly the
        // ambiguous tail, which trains a poor student (CCS's motivation), so no more is asked.
        assert!(acc > 0.1, "{} at keep {keep}: {acc}", r["method"]);
        if r["method"] == "random" && keep > 0.2 {
            assert!(acc > 0.8, "random at keep {keep}: {acc}");
        }
    }
    let policy_of = |m: &str| {
        results.iter().find(|r| r["method"] == m).unwrap()["policy"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        policy_of("moderate"),
        "moderate",
        "a plugin's default policy"
    );
    assert_eq!(policy_of("el2n"), "hardest");

    // The same selections without training, from `kdprune score`; the budget-independent
    // scores `run` computed are read from the score cache, not computed again.
    let output = dir.path().join("out");
    let cached: Vec<String> = std::fs::read_dir(output.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("scores-"))
        .collect();
    assert!(
        cached.len() >= 10,
        "one file per budget-independent method: {cached:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kdprune"))
        .args(["score", path.to_str().unwrap()])
        .env_remove("KDPRUNE_PLUGIN_PATH")
        .env("KDPRUNE_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        log.matches("scores from the cache").count(),
        cached.len(),
        "{log}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("scores/summary.json")).unwrap())
            .unwrap();
    let scored = summary["methods"].as_array().unwrap();
    assert_eq!(scored.len(), methods.len());
    let (labels, test_labels) = {
        let m = manifest::load(&path).unwrap();
        let (train, test) = kdprune::data::load(&m.data, 0).unwrap();
        (train.labels, test.labels)
    };
    // The teacher's outputs, for a training loop of the user's: log-probabilities `[N, C]`
    // in the data's order, their accuracy the teacher's.
    let teacher = &summary["teachers"][0];
    for (set, rows, truth) in [("train", 4000, &labels), ("test", 1000, &test_labels)] {
        let values: ndarray::Array2<f32> =
            ndarray_npy::read_npy(output.join(teacher[set].as_str().unwrap())).unwrap();
        assert_eq!(values.dim(), (rows, 10), "{set}");
        let mut right = 0;
        for (row, &y) in values.rows().into_iter().zip(truth.iter()) {
            let total: f32 = row.iter().map(|v| v.exp()).sum();
            assert!((total - 1.0).abs() < 1e-4, "{set}: {total}");
            let best = row
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            right += usize::from(best.0 == y as usize);
        }
        if set == "test" {
            let accuracy = right as f64 / rows as f64;
            assert!((accuracy - teacher["test_accuracy"].as_f64().unwrap()).abs() < 1e-9);
        }
        assert!(right as f64 > 0.9 * rows as f64, "{set}: {right}");
    }
    for m in scored {
        let name = m["method"].as_str().unwrap();
        let keeps = m["keeps"].as_array().unwrap();
        assert_eq!(keeps.len(), 2, "{name}");
        let scores = m["scores"].as_str().map(|rel| {
            let bytes = std::fs::read(output.join(rel)).unwrap();
            // A 128-byte header, then f32 [N].
            let values: Vec<f32> = bytes[128..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            assert_eq!(values.len(), 4000, "{name}");
            values
        });
        for k in keeps {
            let keep = k["keep"].as_f64().unwrap();
            let kept = kdprune::results::read_npy_u32(&output.join(k["indices"].as_str().unwrap()))
                .unwrap();
            assert_eq!(kept.len(), (keep * 4000.0).round() as usize, "{name}");
            assert!(
                kept.windows(2).all(|w| w[0] < w[1]),
                "{name}: sorted, distinct"
            );
            // What `run` trained on.
            let ran = results
                .iter()
                .find(|r| r["method"] == name && (r["keep"].as_f64().unwrap() - keep).abs() < 1e-6)
                .unwrap();
            let run_kept =
                kdprune::results::read_npy_u32(&output.join(ran["indices"].as_str().unwrap()))
                    .unwrap();
            assert_eq!(
                kept, run_kept,
                "{name} at {keep}: score and run select the same"
            );
            // Hardest-first methods keep scores no lower than any they drop (AUM: no higher).
            if let (Some(s), "el2n" | "forgetting" | "aum" | "tdds" | "entropy") = (&scores, name) {
                let in_set: std::collections::HashSet<u32> = kept.iter().copied().collect();
                let sign = if name == "aum" { -1.0 } else { 1.0 };
                let worst_kept = kept
                    .iter()
                    .map(|&i| sign * s[i as usize])
                    .fold(f32::INFINITY, f32::min);
                let best_dropped = (0..4000u32)
                    .filter(|i| !in_set.contains(i))
                    .map(|i| sign * s[i as usize])
                    .fold(f32::NEG_INFINITY, f32::max);
                assert!(
                    worst_kept >= best_dropped,
                    "{name} at {keep}: {worst_kept} < {best_dropped}"
                );
            }
            // Herding and k-center keep the class proportions (per class by default).
            if name == "herding" || name == "k-center" {
                let mut counts = [0usize; 10];
                for &i in &kept {
                    counts[labels[i as usize] as usize] += 1;
                }
                let mut all = [0usize; 10];
                for &y in &labels {
                    all[y as usize] += 1;
                }
                for c in 0..10 {
                    let expected = all[c] as f64 * keep;
                    assert!(
                        (counts[c] as f64 - expected).abs() <= 1.0,
                        "{name}: class {c} {counts:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_plugin_built_outside_the_workspace_is_dropped_into_a_folder_and_used() {
    let root = repo_root();
    let crate_dir = root.join("examples/external-plugin");
    let target = target_dir().join("external-plugin-test");
    // The example inherits nothing; it reuses this workspace's lock file so no index lookup is
    // needed (cargo copies what it can of it).
    let lock = crate_dir.join("Cargo.lock");
    let had_lock = lock.exists();
    if !had_lock {
        std::fs::copy(root.join("Cargo.lock"), &lock).unwrap();
    }
    let status = Command::new(env!("CARGO"))
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        // No debug info: these plugins are only loaded, and CI's disk is small.
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .args(["build", "--quiet"])
        .status()
        .expect("cargo runs");
    if !had_lock {
        std::fs::remove_file(&lock).ok();
    }
    assert!(status.success(), "building examples/external-plugin failed");
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(
        target.join("debug").join(lib_name("mean_train_loss")),
        folder.path().join(lib_name("mean_train_loss")),
    )
    .unwrap();
    // Its build.rs declares its source hash, outside the workspace too.
    let listed = kdprune(&[
        "plugins",
        "--plugin-dir",
        folder.path().to_str().unwrap(),
        "--json",
    ]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let source = &listed["plugins"][0]["source"];
    assert!(source.as_str().is_some_and(|s| s.len() == 64), "{source}");
    let dir = tempfile::tempdir().unwrap();
    let path = mnist_manifest(
        dir.path(),
        folder.path(),
        "[dynamics]\nepochs = 2\n\n[[prune]]\nmethod = \"mean-train-loss\"\nkeep = [0.25]\n",
        &[
            ("alphas = [0.0, 0.5]", "alphas = [0.0]"),
            ("epochs = 4", "epochs = 2"),
        ],
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let results = results_lines(dir.path());
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["method"], "mean-train-loss");
    assert_eq!(results[0]["kept"], 1000);
}

/// Appends bytes to a library: another file (another SHA-256) that loads the same.
fn append_bytes(library: &Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(library)
        .unwrap();
    f.write_all(b"rebuilt elsewhere").unwrap();
}

#[test]
fn results_are_keyed_by_a_plugins_source_not_its_librarys_bytes() {
    let folder = plugin_folder(&["kdprune_random", "kdprune_probe"]);
    let listed = kdprune(&[
        "plugins",
        "--plugin-dir",
        folder.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let source_of = |name: &str| {
        listed["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed"))["source"]
            .clone()
    };
    // The workspace's plugins declare their source (build.rs); the probe fixture does not.
    let random_source = source_of("random");
    assert!(
        random_source.as_str().is_some_and(|s| s.len() == 64),
        "{random_source}"
    );
    assert!(source_of("probe-inputs").is_null());

    let dir = tempfile::tempdir().unwrap();
    let path = mnist_manifest(
        dir.path(),
        folder.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.1]\n",
        &[
            ("alphas = [0.0, 0.5]", "alphas = [0.0]"),
            ("epochs = 4", "epochs = 1"),
        ],
    );
    let path = path.to_str().unwrap();
    let first = kdprune(&["run", path, "--json"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let key = results_lines(dir.path())[0]["key"].clone();
    // The same source built elsewhere: other bytes, the same plugin, the same keys.
    append_bytes(&folder.path().join(lib_name("kdprune_random")));
    let again = kdprune(&["run", path, "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let summary: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        (summary["ran"].as_u64(), summary["skipped"].as_u64()),
        (Some(0), Some(1))
    );
    let lines = results_lines(dir.path());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["key"], key);
}

#[test]
fn check_refuses_what_run_refuses_before_training() {
    let plugins = plugin_folder(&["kdprune_random"]);
    let fx = fixtures();
    /// A case: its name, edits of the manifest text, and what the error line must say.
    type Case<'a> = (&'a str, Vec<(String, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing data file",
            vec![("mnist-5k.csv.gz".into(), "missing.csv.gz".into())],
            "missing.csv.gz",
        ),
        (
            "directory as data file",
            vec![(
                format!("{}/mnist-5k.csv.gz", fx.display()),
                fx.display().to_string(),
            )],
            "a folder, not a data file",
        ),
        (
            "missing teacher",
            vec![("mnist-zoo-cntk-opset7.onnx".into(), "nope.onnx".into())],
            "nope.onnx",
        ),
        (
            "wrong teacher output name",
            vec![(
                "batch_size = 64\n".into(),
                "batch_size = 64\noutput = \"logitz\"\n".into(),
            )],
            "no output named \"logitz\"",
        ),
        (
            "misspelled method",
            vec![("method = \"random\"".into(), "method = \"randon\"".into())],
            "no plugin named \"randon\"",
        ),
        (
            "undeclared plugin parameter",
            vec![(
                "keep = [0.3, 1.0]".into(),
                "keep = [0.3, 1.0]\nparams = { sead = 1 }".into(),
            )],
            "no parameter \"sead\"",
        ),
        (
            "wrong embedding tensor",
            vec![(
                "batch_size = 64\n".into(),
                "batch_size = 64\nembedding = \"nowhere\"\n".into(),
            )],
            "has no tensor named \"nowhere\"",
        ),
        (
            "output kind declared wrong (run refuses it on the first batch)",
            vec![(
                "batch_size = 64\n".into(),
                "batch_size = 64\noutput_kind = \"probabilities\"\n".into(),
            )],
            "output_kind = \"probabilities\" but the first batch",
        ),
    ];
    for (case, edits, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let edits: Vec<(&str, &str)> = edits
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let path = mnist_manifest(dir.path(), plugins.path(), RANDOM_PRUNE, &edits);
        let out = kdprune(&["check", path.to_str().unwrap()]);
        assert_ne!(out.code, 0, "{case}: check said ok:\n{}", out.stdout);
        let line = error_line(&out);
        assert!(line.contains(expected), "{case}: {line}");
        assert!(
            !out.stderr.trim_end().contains('\n')
                || out
                    .stderr
                    .lines()
                    .filter(|l| l.starts_with("error:"))
                    .count()
                    == 1,
            "{case}: one error line"
        );
    }
    // A good manifest: ok, and nothing trained.
    let dir = tempfile::tempdir().unwrap();
    let path = mnist_manifest(dir.path(), plugins.path(), RANDOM_PRUNE, &[]);
    let out = kdprune(&["check", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("ok") && out.stdout.contains("teacher mnist-zoo-cntk-opset7: opened"),
        "{}",
        out.stdout
    );
    assert!(results_lines(dir.path()).is_empty());
}

#[test]
fn plugins_are_pinned_by_sha256_and_writable_folders_refused() {
    use std::os::unix::fs::PermissionsExt;
    let plugins = plugin_folder(&["kdprune_random"]);
    let lib = plugins.path().join(lib_name("kdprune_random"));
    let sha = kdprune::hash::sha256_hex(&std::fs::read(&lib).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let pinned = |pin: &str| {
        mnist_manifest(
            dir.path(),
            plugins.path(),
            "[[prune]]\nmethod = \"random\"\nkeep = [0.1]\n",
            &[
                (
                    "name = \"mnist-5k\"",
                    &format!("name = \"mnist-5k\"\nplugin_sha256 = {{ random = \"{pin}\" }}"),
                ),
                ("alphas = [0.0, 0.5]", "alphas = [0.0]"),
                ("epochs = 4", "epochs = 1"),
            ],
        )
    };
    let out = kdprune(&["run", pinned(&sha).to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let wrong = format!(
        "{}{}",
        if sha.starts_with('0') { "1" } else { "0" },
        &sha[1..]
    );
    let out = kdprune(&["run", pinned(&wrong).to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let line = error_line(&out);
    assert!(
        line.contains("the manifest pins") && line.contains(&wrong) && line.contains(&sha),
        "{line}"
    );
    // A folder anyone may write to is refused, unless the manifest allows it.
    std::fs::set_permissions(plugins.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = pinned(&sha);
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("writable by other users"),
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen(
            "name = \"mnist-5k\"",
            "name = \"mnist-5k\"\nallow_writable_plugins = true",
            1,
        ),
    )
    .unwrap();
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::set_permissions(plugins.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_failing_plugin_cell_is_recorded_and_the_others_run_when_asked() {
    let plugins = plugin_folder(&["kdprune_random", "kdprune_faulty"]);
    let dir = tempfile::tempdir().unwrap();
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"faulty-panics\"\nkeep = [0.1]\n\n[[prune]]\nmethod = \"random\"\nkeep = [0.1]\n",
        &[
            ("name = \"mnist-5k\"", "name = \"mnist-5k\"\non_plugin_error = \"continue\""),
            ("alphas = [0.0, 0.5]", "alphas = [0.0]"),
            ("epochs = 4", "epochs = 1"),
        ],
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_ne!(out.code, 0, "a failed cell makes the run fail");
    assert!(out.stderr.contains("1 cell(s) failed"), "{}", out.stderr);
    let results = results_lines(dir.path());
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["method"], "random");
    let failures = std::fs::read_to_string(dir.path().join("out/failures.jsonl")).unwrap();
    assert!(
        failures.contains("faulty-panics") && failures.contains("deliberate panic"),
        "{failures}"
    );
}

#[test]
fn a_second_run_on_a_locked_output_folder_refuses_at_once() {
    let plugins = plugin_folder(&["kdprune_random"]);
    let dir = tempfile::tempdir().unwrap();
    let path = mnist_manifest(dir.path(), plugins.path(), RANDOM_PRUNE, &[]);
    let _held = kdprune::results::OutputLock::acquire(&dir.path().join("out")).unwrap();
    let started = std::time::Instant::now();
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let line = error_line(&out);
    assert!(
        line.contains("another kdprune") && line.contains("is writing to this output folder"),
        "{line}"
    );
    assert!(started.elapsed().as_secs() < 20, "refused before any work");
    assert!(results_lines(dir.path()).is_empty());
}

/// A small grid that touches every stage: the teacher (and its caches), the dynamics (a
/// proxy for el2n), scoring, training and writing; 2 methods × 2 keeps × 2 α × 2 seeds.
fn crash_manifest(dir: &Path, plugins: &Path) -> PathBuf {
    mnist_manifest(
        dir,
        plugins,
        "[dynamics]\nepochs = 2\n\n[[prune]]\nmethod = \"random\"\nkeep = [0.1, 0.2]\n\n[[prune]]\nmethod = \"el2n\"\nkeep = [0.1, 0.2]\n",
        &[("seeds = [0]", "seeds = [0, 1]"), ("epochs = 4", "epochs = 1")],
    )
}

/// (key → accuracy) of a results file, failing on a duplicated key or a line that is not a
/// whole result.
fn results_by_key(dir: &Path) -> std::collections::BTreeMap<String, f64> {
    let mut by_key = std::collections::BTreeMap::new();
    for r in results_lines(dir) {
        let key = r["key"].as_str().unwrap().to_string();
        let previous = by_key.insert(key.clone(), r["test_accuracy"].as_f64().unwrap());
        assert!(previous.is_none(), "cell {key} written twice");
    }
    by_key
}

#[test]
fn runs_killed_at_random_points_or_out_of_disk_resume_to_the_same_results() {
    use rand::{Rng, SeedableRng};
    let plugins = plugin_folder(&["kdprune_random", "kdprune_el2n"]);
    let reference_dir = tempfile::tempdir().unwrap();
    let out = kdprune(&[
        "run",
        crash_manifest(reference_dir.path(), plugins.path())
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reference = results_by_key(reference_dir.path());
    assert_eq!(reference.len(), 16);

    // kill -9 at random moments (teacher, dynamics, scoring, training, writing), then resume.
    // Each round starts from nothing (its own output and caches), is killed twice at random
    // points of the run's duration, and resumed to the end.
    let started = std::time::Instant::now();
    kdprune(&[
        "run",
        crash_manifest(tempfile::tempdir().unwrap().path(), plugins.path())
            .to_str()
            .unwrap(),
    ]);
    let duration_ms = started.elapsed().as_millis().max(200) as u64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut kills = 0;
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let path = crash_manifest(dir.path(), plugins.path());
        for _ in 0..2 {
            let mut child = Command::new(env!("CARGO_BIN_EXE_kdprune"))
                .args(["run", path.to_str().unwrap()])
                .env_remove("KDPRUNE_PLUGIN_PATH")
                .env("KDPRUNE_LOG", "error")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(
                rng.gen_range(10..duration_ms),
            ));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
            }
            child.wait().unwrap();
            results_by_key(dir.path()); // never a duplicate or a broken line, even now
        }
        let out = kdprune(&["run", path.to_str().unwrap()]);
        assert_eq!(out.code, 0, "round {round}: {}", out.stderr);
        assert_eq!(
            results_by_key(dir.path()),
            reference,
            "round {round}: 0 lost, 0 duplicated, same results"
        );
    }
    assert!(kills >= 6, "only {kills} kills landed in a run");
    eprintln!("killed {kills} times in 6 rounds");

    // A full disk (a small tmpfs as the output folder, where this machine allows a mount).
    let dir = tempfile::tempdir().unwrap();
    let path = crash_manifest(dir.path(), plugins.path());
    let disk = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=24k",
            "tmpfs",
            disk.path().to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("no tmpfs mount here (not root?): the full-disk half of this test did not run");
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace(
            &dir.path().join("out").display().to_string(),
            &disk.path().join("out").display().to_string(),
        )
        .replacen(
            "plugin_dirs = [",
            &format!(
                "cache_dir = \"{}\"\nplugin_dirs = [",
                cache.path().display()
            ),
            1,
        );
    std::fs::write(cache.path().join("m.toml"), &text).unwrap();
    let out = kdprune(&["run", cache.path().join("m.toml").to_str().unwrap()]);
    let partial = results_by_key(disk.path());
    let remount = |size: &str| {
        Command::new("mount")
            .args([
                "-o",
                &format!("remount,size={size}"),
                disk.path().to_str().unwrap(),
            ])
            .status()
            .unwrap()
    };
    if out.code == 0 {
        remount("4m");
        Command::new("umount").arg(disk.path()).status().ok();
        panic!("the run fit in 24 KiB; make the disk smaller");
    }
    let line = error_line(&out);
    assert!(
        line.contains("No space left") || line.contains("cannot"),
        "{line}"
    );
    assert!(partial.len() < 16);
    assert!(remount("4m").success());
    let out = kdprune(&["run", cache.path().join("m.toml").to_str().unwrap()]);
    let resumed = results_by_key(disk.path());
    Command::new("umount").arg(disk.path()).status().ok();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        resumed, reference,
        "after a full disk: 0 lost, 0 duplicated, same results"
    );
    eprintln!("full disk after {} results: {line}", partial.len());
}

#[test]
fn numpy_arrays_are_data() {
    use ndarray_npy::WriteNpyExt;
    let plugins = plugin_folder(&["kdprune_random"]);
    let dir = tempfile::tempdir().unwrap();
    // The MNIST fixture as uint8 images [N, 1, 28, 28] and int64 labels [N].
    let csv = mnist_5k_csv();
    let x = csv
        .features
        .mapv(|v| v as u8)
        .into_shape_with_order((csv.len(), 1, 28, 28))
        .unwrap();
    let y = ndarray::Array1::from(csv.labels.iter().map(|&v| v as i64).collect::<Vec<_>>());
    x.write_npy(std::fs::File::create(dir.path().join("x.npy")).unwrap())
        .unwrap();
    y.write_npy(std::fs::File::create(dir.path().join("y.npy")).unwrap())
        .unwrap();
    let fx = fixtures();
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.2]\n",
        &[
            (
                &format!("format = \"csv\"\ntrain = \"{}/mnist-5k.csv.gz\"\nlabel = -1\nheader = false\nsample_shape = [1, 28, 28]\n", fx.display()),
                &format!("format = \"npy\"\ntrain_images = \"{0}/x.npy\"\ntrain_labels = \"{0}/y.npy\"\n", dir.path().display()),
            ),
            ("alphas = [0.0, 0.5]", "alphas = [0.0]"),
            ("epochs = 4", "epochs = 2"),
        ],
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = &results_lines(dir.path())[0];
    assert_eq!(
        r["kept"], 800,
        "20 % of the 4000 training images after the holdout"
    );
    assert!(r["test_accuracy"].as_f64().unwrap() > 0.8, "{r}");
}

#[test]
fn a_method_written_in_numpy_runs_through_the_external_plugin() {
    let plugins = plugin_folder(&["kdprune_external"]);
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "scripts/setup.sh --runtime makes .venv with numpy"
    );
    let script = repo_root().join("examples/python-method/class_balanced_loss.py");
    let entry = |command: &str| {
        format!(
            "[dynamics]\nepochs = 2\n\n[[prune]]\nmethod = \"external\"\nkeep = [0.25]\nparams = {{ command = {command}, inputs = [\"dynamics/batch/loss\"], timeout_s = 60.0 }}\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let good = format!("[\"{}\", \"{}\"]", python.display(), script.display());
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        &entry(&good),
        &[
            ("alphas = [0.0, 0.5]", "alphas = [0.0]"),
            ("epochs = 4", "epochs = 1"),
        ],
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = &results_lines(dir.path())[0];
    assert_eq!(r["method"], "external");
    assert_eq!(r["kept"], 1000);
    // The kept quarter are the hardest by the script's class-balanced loss.
    let out = kdprune(&["score", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // At two keeps the command runs once per keep, or once in all with budget_independent.
    for (flag, calls) in [("false", 2), ("true", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("calls");
        let counting = format!(
            "[\"{py}\", \"-c\", \"import subprocess, sys; open('{counter}', 'a').write('x'); subprocess.run(['{py}', '{script}', sys.argv[1]], check=True)\"]",
            py = python.display(),
            counter = counter.display(),
            script = script.display()
        );
        let text = entry(&counting)
            .replace("keep = [0.25]", "keep = [0.25, 0.5]")
            .replace(
                "timeout_s = 60.0",
                &format!("timeout_s = 60.0, budget_independent = {flag}"),
            );
        let path = mnist_manifest(dir.path(), plugins.path(), &text, &[]);
        let out = kdprune(&["score", path.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            std::fs::read_to_string(&counter).unwrap().len(),
            calls,
            "budget_independent = {flag}"
        );
    }

    // A command that fails, one that writes nothing, one that runs too long: one line each.
    for (command, expected) in [
        (
            format!(
                "[\"{}\", \"-c\", \"import sys; sys.exit('no luck here')\"]",
                python.display()
            ),
            "failed (exit status: 1): no luck here",
        ),
        (
            format!("[\"{}\", \"-c\", \"pass\"]", python.display()),
            "wrote neither scores.npy nor indices.npy",
        ),
        (
            format!(
                "[\"{}\", \"-c\", \"import time; time.sleep(30)\"]",
                python.display()
            ),
            "ran past timeout_s",
        ),
        ("[\"/nonexistent/program\"]".to_string(), "cannot start"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let text = entry(&command).replace("timeout_s = 60.0", "timeout_s = 1.0");
        let path = mnist_manifest(
            dir.path(),
            plugins.path(),
            &text,
            &[
                ("alphas = [0.0, 0.5]", "alphas = [0.0]"),
                ("epochs = 4", "epochs = 1"),
            ],
        );
        let out = kdprune(&["run", path.to_str().unwrap()]);
        assert_ne!(out.code, 0);
        let line = error_line(&out);
        // The input folder is kept for a rerun by hand, and named.
        let kept = line
            .split("its input folder is kept: ")
            .nth(1)
            .map(|f| PathBuf::from(f.trim()));
        assert!(
            kept.as_ref()
                .is_some_and(|f| f.join("request.json").is_file()),
            "{line}"
        );
        std::fs::remove_dir_all(kept.unwrap()).ok();
        assert!(
            line.contains("plugin \"external\"") && line.contains(expected),
            "{line}"
        );
    }
    // An input name that does not exist is refused before any work.
    let dir = tempfile::tempdir().unwrap();
    let text = entry(&good).replace("dynamics/batch/loss", "dynamics/batch/lost");
    let path = mnist_manifest(dir.path(), plugins.path(), &text, &[]);
    let out = kdprune(&["check", path.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    assert!(
        error_line(&out).contains("\"dynamics/batch/lost\", which is not an input"),
        "{}",
        error_line(&out)
    );
}

#[test]
fn cifar10_as_an_image_folder_and_as_cifar_binary() {
    let archive = repo_root().join("../shared/data/cifar10/cifar10-jpeg-60k.tar.gz");
    if !archive.exists() {
        eprintln!(
            "{} is not here (a fresh clone without ../shared): this test did not run",
            archive.display()
        );
        return;
    }
    let data = tempfile::tempdir().unwrap();
    // 50 training and 20 test images per class.
    let status = Command::new("tar")
        .args([
            "-xzf",
            archive.to_str().unwrap(),
            "-C",
            data.path().to_str().unwrap(),
            "--wildcards",
            "train/*/00[0-4]?.jpg",
            "test/*/00[0-1]?.jpg",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let plugins = plugin_folder(&["kdprune_random"]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"name = "cifar10-folder"
output = "{out}"
plugin_dirs = ["{plugins}"]

[data]
format = "image_folder"
train = "{data}/train"
test = "{data}/test"

[data.normalise]
scale = 255.0
mean = [0.4914, 0.4822, 0.4465]
std = [0.2470, 0.2435, 0.2616]

[student]
layers = ["conv 8", "relu", "maxpool 2", "conv 16", "relu", "maxpool 2"]
epochs = 15
batch_size = 32
lr = 0.01
warmup_epochs = 1
clip_grad_norm = 5.0

[[prune]]
method = "random"
keep = [1.0]
"#,
        out = dir.path().join("out").display(),
        plugins = plugins.path().display(),
        data = data.path().display(),
    );
    let path = dir.path().join("m.toml");
    std::fs::write(&path, manifest).unwrap();
    let m = manifest::load(&path).unwrap();
    let (train, test) = kdprune::data::load(&m.data, 0).unwrap();
    assert_eq!((train.len(), test.len()), (500, 200));
    assert_eq!(train.sample_shape, vec![3, 32, 32]);
    assert_eq!(train.num_classes, 10);
    // Classes in sorted folder order, as torchvision's ImageFolder: airplane = 0, truck = 9.
    assert_eq!(train.labels[0], 0);
    assert_eq!(*train.labels.last().unwrap(), 9);
    // The second load comes from the decoded cache, the same values.
    let cached: Vec<_> = std::fs::read_dir(&m.cache_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(cached.len(), 2, "one decoded cache per folder");
    let (again, _) = kdprune::data::load(&m.data, 0).unwrap();
    assert_eq!(again.features, train.features);
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let acc = results_lines(dir.path())[0]["test_accuracy"]
        .as_f64()
        .unwrap();
    assert!(
        acc > 0.15,
        "a small CNN on 500 CIFAR-10 images beats chance (10 %): {acc}"
    );

    // The same images as a CIFAR-10 binary file: label byte, then the 3072 bytes of planes.
    let bin = data.path().join("data_batch_1.bin");
    let mut bytes = Vec::new();
    for (row, &label) in train.features.rows().into_iter().zip(&train.labels) {
        bytes.push(label as u8);
        bytes.extend(row.iter().map(|&v| v as u8));
    }
    std::fs::write(&bin, &bytes).unwrap();
    let cifar = kdprune::data::read_cifar(std::slice::from_ref(&bin), 1, 10).unwrap();
    assert_eq!(cifar.features, train.features);
    assert_eq!(cifar.labels, train.labels);
    std::fs::write(&bin, &bytes[..bytes.len() - 5]).unwrap();
    let err = kdprune::data::read_cifar(&[bin], 1, 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a whole number of 3073-byte CIFAR records"),
        "{err}"
    );
}

/// The headless browser the report test screenshots with (Debian's `chromium-headless-shell`
/// or `chromium`, installed by scripts/setup.sh).
fn browser() -> PathBuf {
    for name in ["chromium-headless-shell", "chromium"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("no chromium-headless-shell or chromium on PATH; scripts/setup.sh installs it (apt-get install chromium-headless-shell)");
}

/// Pixels of `png` within 40 (per channel) of `rgb`.
fn pixels_near(png: &Path, rgb: [u8; 3]) -> usize {
    let img = image::open(png).expect("screenshot decodes").to_rgb8();
    img.pixels()
        .filter(|p| (0..3).all(|c| (p.0[c] as i32 - rgb[c] as i32).abs() <= 40))
        .count()
}

/// `page` drawn by the headless browser into `shot` (a PNG, 1000 × 1400).
fn screenshot(page: &Path, shot: &Path) {
    let status = Command::new(browser())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,1400",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("the browser starts");
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn several_teachers_auto_alpha_and_a_report_a_browser_shows() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&[
        "kdprune_random",
        "kdprune_teacher_el2n",
        "kdprune_nearest_centroid",
    ]);
    let fx = fixtures();
    let zoo = zoo_teacher_block();
    let two = format!(
        "[[teacher]]\nname = \"zoo-cnn\"\nonnx = \"{}/mnist-zoo-cntk-opset7.onnx\"\nbatch_size = 64\n[teacher.preprocess]\nlayout = \"nchw\"\n\n[[teacher]]\nplugin = \"nearest-centroid\"\nparams = {{ scale = 255.0 }}\n",
        fx.display()
    );
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.1, 0.5]\n\n[[prune]]\nmethod = \"teacher-el2n\"\nkeep = [0.1, 0.5]\n",
        &[
            (&zoo, &two),
            ("seeds = [0]", "seeds = [0, 1]"),
            ("epochs = 4", "epochs = 2"),
            (
                "alphas = [0.0, 0.5]",
                "alphas = [0.0, 0.5, \"auto\"]\nauto = { candidates = [0.0, 0.9], holdout = 0.25 }",
            ),
        ],
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // 2 methods × 2 keeps × 2 seeds × (α = 0 once + 2 α × 2 teachers).
    let results = results_lines(dir.path());
    assert_eq!(results.len(), 40, "{}", out.stdout);
    for teacher in ["zoo-cnn", "nearest-centroid"] {
        assert_eq!(
            results.iter().filter(|r| r["teacher"] == teacher).count(),
            16,
            "{teacher}"
        );
    }
    // "auto": each cell's α chosen by its held-out search among the candidates, recorded with
    // every candidate's held-out accuracy; the choice is the best of them.
    let autos: Vec<&serde_json::Value> = results
        .iter()
        .filter(|r| r["alpha_rule"] == "auto-v4")
        .collect();
    assert_eq!(autos.len(), 16);
    for r in &autos {
        let trials = r["alpha_search"].as_array().expect("alpha_search recorded");
        let tried: Vec<f64> = trials
            .iter()
            .map(|t| t["alpha"].as_f64().unwrap())
            .collect();
        assert_eq!(tried, [0.0, 0.9], "{r}");
        let best = trials
            .iter()
            .filter_map(|t| t["holdout_accuracy"].as_f64())
            .fold(f64::MIN, f64::max);
        let chosen = r["alpha"].as_f64().unwrap();
        let of_chosen = trials
            .iter()
            .find(|t| t["alpha"].as_f64() == Some(chosen))
            .and_then(|t| t["holdout_accuracy"].as_f64());
        assert_eq!(of_chosen, Some(best), "{r}");
        assert!(
            r["teacher"].is_string(),
            "an auto cell names its teacher: {r}"
        );
    }
    let acc = |name: &str| {
        results
            .iter()
            .find(|r| r["teacher"] == name)
            .and_then(|r| r["teacher_test_accuracy"].as_f64())
            .unwrap()
    };
    assert!(acc("zoo-cnn") > 0.95 && acc("nearest-centroid") < 0.9);
    // Keys are distinct: 40 students, 40 keys; a second run trains nothing.
    let keys: std::collections::HashSet<&str> =
        results.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 40);
    let again = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("0 cells run, 40 already done"),
        "{}",
        again.stdout
    );

    // The report: Markdown with the findings, a page with one figure per plot.
    let out_dir = dir.path().join("out");
    let report = kdprune(&["report", out_dir.to_str().unwrap()]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    for part in [
        "zoo-cnn α = 0.5",
        "nearest-centroid α = auto",
        "### 1. Does distillation help",
        "### 2. With distillation, is random pruning",
        "### 4. At small keep, can a smaller teacher",
        "### `alpha = \"auto\"` against",
    ] {
        assert!(md.contains(part), "{part:?} missing from\n{md}");
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    // Self-contained: nothing to fetch (the SVG namespace is a name, not a fetch).
    assert!(
        !html.contains("<script") && !html.contains("src=") && !html.contains("href=\"http"),
        "self-contained"
    );
    // Accuracy against keep (one per teacher), best α, accuracy against teacher (one per method).
    assert_eq!(html.matches("<svg").count(), 5, "figures");

    // A real browser draws it: the first two methods' colours (Okabe–Ito blue and orange)
    // cover lines and bands of the plots in the screenshot.
    let shot = dir.path().join("shot.png");
    screenshot(&out_dir.join("report.html"), &shot);
    let blue = pixels_near(&shot, [0, 114, 178]);
    let orange = pixels_near(&shot, [213, 94, 0]);
    assert!(blue > 300 && orange > 300, "blue {blue}, orange {orange}");
    // A blank page has neither: the same check on the page without its figures fails.
    let bare = dir.path().join("bare.html");
    let cut = html.find("<section id=\"figures\">").unwrap();
    let end = html.find("</section>").unwrap() + "</section>".len();
    std::fs::write(&bare, format!("{}{}", &html[..cut], &html[end..])).unwrap();
    let bare_shot = dir.path().join("bare.png");
    screenshot(&bare, &bare_shot);
    assert!(pixels_near(&bare_shot, [0, 114, 178]) < 50);
}

#[test]
fn the_virtual_teacher_serves_label_derived_soft_targets() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&["kdprune_random", "kdprune_virtual_teacher"]);
    let zoo = zoo_teacher_block();
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[
            (&zoo, "[teacher]\nplugin = \"virtual-teacher\"\n"),
            ("epochs = 4", "epochs = 2"),
        ],
    );
    // The served logits: correct_prob + 1 on the training label, (1 − 0.99)/9 + 1 elsewhere;
    // a row it never saw (a test digit) is uniform.
    let m = manifest::load(&path).unwrap();
    let (train, test) = kdprune::data::load(&m.data, 0).unwrap();
    let registry = Registry::load(&[plugins.path().to_path_buf()]).unwrap();
    let mut teacher = kdprune::teacher::Teacher::new(
        m.teacher().unwrap(),
        &registry,
        &train,
        &dir.path().join("cache"),
        0,
    )
    .unwrap();
    let on_train = teacher.logits(&train, "train").unwrap();
    assert_eq!(on_train.accuracy(&train.labels), 1.0);
    let row = on_train.logits.row(0);
    let y = train.labels[0] as usize;
    assert!((row[y] - 1.99).abs() < 1e-6, "{row:?}");
    assert!(
        (row[(y + 1) % 10] - (1.0 + 0.01 / 9.0)).abs() < 1e-6,
        "{row:?}"
    );
    let on_test = teacher.logits(&test, "test").unwrap();
    let first = on_test.logits.row(0);
    assert!(first.iter().all(|&v| (v - 1.1).abs() < 1e-6), "{first:?}");

    // Through a run: students distil from it; its test accuracy is chance by construction.
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let results = results_lines(dir.path());
    let distilled = results.iter().find(|r| r["alpha"] == 0.5).unwrap();
    assert_eq!(distilled["teacher"], "virtual-teacher");
    assert!(distilled["teacher_test_accuracy"].as_f64().unwrap() < 0.2);
    assert!(
        distilled["test_accuracy"].as_f64().unwrap() > 0.8,
        "{distilled}"
    );
}

#[test]
fn precomputed_logits_teach_like_the_model_that_made_them() {
    use ndarray_npy::WriteNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&["kdprune_random"]);
    let zoo = zoo_teacher_block();
    let onnx_run = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[("epochs = 4", "epochs = 2")],
    );
    // The zoo model's logits on the training and test sets as kdprune loads them, written as
    // a PyTorch user would with np.save.
    let m = manifest::load(&onnx_run).unwrap();
    let (train, test) = kdprune::data::load(&m.data, 0).unwrap();
    let registry = Registry::default();
    let mut teacher = kdprune::teacher::Teacher::new(
        m.teacher().unwrap(),
        &registry,
        &train,
        &dir.path().join("c"),
        0,
    )
    .unwrap();
    let write = |name: &str, a: &ndarray::Array2<f32>| {
        let path = dir.path().join(name);
        a.write_npy(std::fs::File::create(&path).unwrap()).unwrap();
        path
    };
    let train_npy = write(
        "train-logits.npy",
        &teacher.logits(&train, "train").unwrap().logits,
    );
    let test_npy = write(
        "test-logits.npy",
        &teacher.logits(&test, "test").unwrap().logits,
    );

    let out = kdprune(&["run", onnx_run.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let by_onnx = results_lines(dir.path());

    let other = tempfile::tempdir().unwrap();
    let logits_block = format!(
        "[teacher]\nname = \"zoo-logits\"\nlogits = {{ train = \"{}\", test = \"{}\" }}\n",
        train_npy.display(),
        test_npy.display()
    );
    let precomputed = mnist_manifest(
        other.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[("epochs = 4", "epochs = 2"), (&zoo, &logits_block)],
    );
    let out = kdprune(&["run", precomputed.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let by_logits = results_lines(other.path());
    // The same soft labels train the same students, bit for bit.
    for (a, b) in by_onnx.iter().zip(&by_logits) {
        assert_eq!(a["test_accuracy"], b["test_accuracy"], "{a}\n{b}");
        assert_eq!(a["teacher_test_accuracy"], b["teacher_test_accuracy"]);
    }
    assert!(by_logits.iter().any(|r| r["teacher"] == "zoo-logits"));

    // Logits of the wrong set are refused by `check`, naming the file and both shapes.
    let swapped = mnist_manifest(
        other.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[(
            &zoo,
            &format!(
                "[teacher]\nlogits = {{ train = \"{}\", test = \"{}\" }}\n",
                test_npy.display(),
                test_npy.display()
            ),
        )],
    );
    let line = error_line(&kdprune(&["check", swapped.to_str().unwrap()]));
    assert!(
        line.contains("test-logits.npy")
            && line.contains("holds [1000, 10] but the set has 4000 examples"),
        "{line}"
    );
}

#[test]
fn an_ensemble_teacher_combines_the_teachers_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&["kdprune_random", "kdprune_nearest_centroid"]);
    let fx = fixtures();
    let zoo = zoo_teacher_block();
    let three = format!(
        "[[teacher]]\nname = \"zoo\"\nonnx = \"{}/mnist-zoo-cntk-opset7.onnx\"\nbatch_size = 64\n[teacher.preprocess]\nlayout = \"nchw\"\n\n[[teacher]]\nplugin = \"nearest-centroid\"\nparams = {{ scale = 255.0 }}\n\n[[teacher]]\nname = \"both\"\nensemble = [\"zoo\", \"nearest-centroid\"]\ncombine = \"probabilities\"\n",
        fx.display()
    );
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.3]\n",
        &[(&zoo, &three), ("epochs = 4", "epochs = 2")],
    );
    let out = kdprune(&["check", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("teacher both: an ensemble of zoo, nearest-centroid"),
        "{}",
        out.stdout
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let results = results_lines(dir.path());
    // α = 0 once, α = 0.5 per teacher.
    assert_eq!(results.len(), 4);
    let acc = |name: &str| {
        results
            .iter()
            .find(|r| r["teacher"] == name)
            .and_then(|r| r["teacher_test_accuracy"].as_f64())
            .unwrap()
    };
    // The mixture lies between a strong and a weak teacher, and is its own teacher.
    let (zoo_acc, nc, both) = (acc("zoo"), acc("nearest-centroid"), acc("both"));
    assert!(nc < both && both <= zoo_acc + 0.01, "{zoo_acc} {nc} {both}");

    // An ensemble of a teacher not above it is refused at its place.
    let bad = mnist_manifest(
        dir.path(),
        plugins.path(),
        RANDOM_PRUNE,
        &[(
            &zoo,
            &three.replace("[\"zoo\", \"nearest-centroid\"]", "[\"zoo\", \"centroid\"]"),
        )],
    );
    let line = error_line(&kdprune(&["check", bad.to_str().unwrap()]));
    assert!(
        line.contains("ensemble names \"centroid\", which is not a [[teacher]] above it"),
        "{line}"
    );
}

#[test]
fn self_distillation_trains_its_teacher_once_and_serves_it_through_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&["kdprune_random"]);
    let cache = dir.path().join("cache");
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.3, 1.0]\n",
        &[
            (&zoo_teacher_block(), "[teacher]\ntrain = {}\n"),
            (
                "plugin_dirs =",
                &format!("cache_dir = \"{}\"\nplugin_dirs =", cache.display()),
            ),
            ("epochs = 4", "epochs = 2"),
        ],
    );
    let check = kdprune(&["check", path.to_str().unwrap()]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check.stdout.contains("teacher self:") && check.stdout.contains("run trains it first"),
        "{}",
        check.stdout
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let models: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("trained-teacher-"))
        })
        .collect();
    assert_eq!(models.len(), 1, "{models:?}");
    let model_bytes = std::fs::read(&models[0]).unwrap();
    let results = results_lines(dir.path());
    assert_eq!(results.len(), 4);
    let distilled: Vec<&serde_json::Value> = results.iter().filter(|r| r["alpha"] == 0.5).collect();
    assert!(distilled.iter().all(|r| r["teacher"] == "self"));
    // The teacher is the student's architecture trained with seed 0 on all the data: the
    // α = 0 student at keep 1.0 and seed 0 is the same network, trained the same way, so the
    // model ONNX Runtime serves scores as it does (within one test example of 1 000).
    let full = results
        .iter()
        .find(|r| r["keep"] == 1.0 && r["alpha"] == 0.0)
        .unwrap();
    let teacher_acc = distilled[0]["teacher_test_accuracy"].as_f64().unwrap();
    let student_acc = full["test_accuracy"].as_f64().unwrap();
    assert!(
        (teacher_acc - student_acc).abs() <= 1.0 / 1000.0 + 1e-9,
        "teacher {teacher_acc} vs the same network trained by the student path {student_acc}"
    );
    assert!(teacher_acc > 0.85, "{teacher_acc}");
    // Another output folder, the same cache: the teacher is not trained again.
    let again_manifest = std::fs::read_to_string(&path)
        .unwrap()
        .replace("/out\"", "/out2\"");
    let again_path = dir.path().join("again.toml");
    std::fs::write(&again_path, again_manifest).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_kdprune"))
        .args(["run", again_path.to_str().unwrap()])
        .env_remove("KDPRUNE_PLUGIN_PATH")
        .env("KDPRUNE_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{log}");
    assert!(log.contains("trained teacher from the cache"), "{log}");
    assert!(!log.contains("training the teacher"), "{log}");
    assert_eq!(std::fs::read(&models[0]).unwrap(), model_bytes);
    // A wrong field inside train = { ... } is named as such.
    let bad = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.3]\n",
        &[(&zoo_teacher_block(), "[teacher]\ntrain = { epoch = 3 }\n")],
    );
    let refused = kdprune(&["check", bad.to_str().unwrap()]);
    assert_ne!(refused.code, 0);
    assert!(error_line(&refused).contains("epoch"), "{}", refused.stderr);
}

#[test]
fn shards_prepared_and_run_as_separate_processes_merge_into_the_bytes_of_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&["kdprune_random", "kdprune_teacher_el2n"]);
    let prune = "[[prune]]\nmethod = \"random\"\nkeep = [0.1, 0.5]\n\n[[prune]]\nmethod = \"teacher-el2n\"\nkeep = [0.1, 0.5]\n";
    let edits = [
        ("seeds = [0]", "seeds = [0, 1]"),
        ("epochs = 4", "epochs = 2"),
    ];
    let one = mnist_manifest(dir.path(), plugins.path(), prune, &edits);
    let whole = kdprune(&["run", one.to_str().unwrap()]);
    assert_eq!(whole.code, 0, "{}", whole.stderr);

    // The same manifest into another folder (its own cache), split three ways.
    let text = std::fs::read_to_string(&one)
        .unwrap()
        .replace("/out\"", "/split\"");
    let split = dir.path().join("split.toml");
    std::fs::write(&split, text).unwrap();
    let m = split.to_str().unwrap().to_string();
    let spawn_all = |command: &str| {
        let children: Vec<std::process::Child> = (0..3)
            .map(|i| {
                Command::new(env!("CARGO_BIN_EXE_kdprune"))
                    .args([command, &m, "--shard", &format!("{i}/3")])
                    .env_remove("KDPRUNE_PLUGIN_PATH")
                    .env("KDPRUNE_LOG", "info")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                let log = String::from_utf8_lossy(&out.stderr).into_owned();
                assert!(out.status.success(), "{command}: {log}");
                log
            })
            .collect::<Vec<String>>()
    };
    spawn_all("prepare");
    let cache = dir.path().join("split/cache");
    let parts = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".part-")
        })
        .count();
    assert_eq!(parts, 6, "three shards × (train, test) of the one teacher");
    // Merging before the cells have run names the shard to run.
    let early = kdprune(&["merge", &m]);
    assert_ne!(early.code, 0);
    assert!(error_line(&early).contains("--shard"), "{}", early.stderr);
    let logs = spawn_all("run").join("\n");
    assert!(
        logs.contains("teacher outputs joined from the shards' parts"),
        "{logs}"
    );
    assert!(
        !logs.contains("teacher ran"),
        "no shard labels the data again: {logs}"
    );
    let merged = kdprune(&["merge", &m]);
    assert_eq!(merged.code, 0, "{}", merged.stderr);
    assert!(
        merged.stdout.contains("3 shards merged: 16 results added"),
        "{}",
        merged.stdout
    );

    let a = std::fs::read(dir.path().join("out/results.jsonl")).unwrap();
    let b = std::fs::read(dir.path().join("split/results.jsonl")).unwrap();
    assert_eq!(a.iter().filter(|&&c| c == b'\n').count(), 16);
    assert!(
        a == b,
        "results.jsonl differs:\n{}\n---\n{}",
        String::from_utf8_lossy(&a),
        String::from_utf8_lossy(&b)
    );
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let (ia, ib) = (
        dir.path().join("out/indices"),
        dir.path().join("split/indices"),
    );
    assert_eq!(names(&ia), names(&ib));
    for f in names(&ia) {
        assert_eq!(
            std::fs::read(ia.join(&f)).unwrap(),
            std::fs::read(ib.join(&f)).unwrap(),
            "{f}"
        );
    }
    // A second merge adds nothing and changes nothing.
    let again = kdprune(&["merge", &m]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("0 results added, 16 there already"),
        "{}",
        again.stdout
    );
    assert_eq!(
        std::fs::read(dir.path().join("split/results.jsonl")).unwrap(),
        b
    );
}

#[test]
fn dynamics_prepared_run_by_run_on_shards_join_into_the_records_of_one_proxy_training() {
    let plugins = plugin_folder(&["kdprune_probe"]);
    let work = tempfile::tempdir().unwrap();
    let setup = |name: &str| {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (cache, dump) = (dir.join("cache"), dir.join("dump"));
        let path = probe_manifest(&dir, plugins.path(), &cache, &dump, "");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("runs = 2\n", "runs = 3\n");
        std::fs::write(&path, text).unwrap();
        (manifest::load(&path).unwrap(), cache, dump, path)
    };
    let (whole, _, whole_dump, _) = setup("whole");
    kdprune::experiment::run(&whole, &Default::default()).unwrap();

    // Three runs over two shards: shard 0 records runs 0 and 2 (and run 0's embedding),
    // shard 1 run 1, each into a part of its own.
    let (split, cache, split_dump, split_path) = setup("split");
    for i in 0..2 {
        let options = kdprune::experiment::RunOptions {
            shard: Some(kdprune::shard::Shard::new(i, 2).unwrap()),
            ..Default::default()
        };
        let summary = kdprune::experiment::distributed::prepare(&split, &options).unwrap();
        assert_eq!(
            summary.dynamics_runs,
            if i == 0 { vec![0, 2] } else { vec![1] }
        );
    }
    let names = |files: Vec<PathBuf>| -> Vec<String> {
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let parts = names(dynamics_files(&cache));
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(parts.iter().all(|p| p.contains(".run-")), "{parts:?}");
    // A shard prepared again finds its parts and records nothing.
    let again = kdprune::experiment::distributed::prepare(
        &split,
        &kdprune::experiment::RunOptions {
            shard: Some(kdprune::shard::Shard::new(1, 2).unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(again.dynamics_runs.is_empty());

    let run = Command::new(env!("CARGO_BIN_EXE_kdprune"))
        .args(["run", split_path.to_str().unwrap()])
        .env_remove("KDPRUNE_PLUGIN_PATH")
        .env("KDPRUNE_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(log.contains("joining the runs' parts"), "{log}");
    assert!(
        !log.contains("proxy run done"),
        "the run trains no proxy: {log}"
    );
    let joined = names(dynamics_files(&cache));
    assert_eq!(
        joined.len(),
        1,
        "the parts are joined and removed: {joined:?}"
    );
    assert!(!joined[0].contains(".run-"));
    // Every record the plugin received, bit for bit those of one process recording all runs.
    let mut dumped = names(
        std::fs::read_dir(&whole_dump)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect(),
    );
    dumped.sort();
    assert!(dumped
        .iter()
        .any(|f| f.starts_with("dynamics__pass__logits")));
    assert!(
        dumped.iter().any(|f| f.starts_with("embeddings__proxy")),
        "{dumped:?}"
    );
    for f in &dumped {
        assert_eq!(
            std::fs::read(whole_dump.join(f)).unwrap(),
            std::fs::read(split_dump.join(f)).unwrap_or_default(),
            "{f}"
        );
    }
}

/// Runs one step of a job file locally as `n` concurrent processes: `env` for each index.
fn run_as_processes(n: usize, step: &str, spawn: impl Fn(usize) -> Command) {
    let children: Vec<std::process::Child> = (0..n)
        .map(|i| {
            spawn(i)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{step} {i}/{n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_slurm_and_kubernetes_job_files_run_a_sweep_as_n_processes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let plugins = plugin_folder(&["kdprune_random"]);
    let kdprune_bin = env!("CARGO_BIN_EXE_kdprune");
    let prune = "[[prune]]\nmethod = \"random\"\nkeep = [0.1, 0.3]\n";
    let edits = [
        ("seeds = [0]", "seeds = [0, 1, 2]"),
        ("epochs = 4", "epochs = 1"),
    ];

    // Slurm: the sbatch files are bash scripts whose #SBATCH lines are comments; an array task
    // is the script with SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT set.
    let slurm = root.join("deploy/slurm");
    let prepare = std::fs::read_to_string(slurm.join("prepare.sbatch")).unwrap();
    let array = |text: &str| -> usize {
        let range = text
            .lines()
            .find_map(|l| l.strip_prefix("#SBATCH --array=0-"))
            .expect("an array job");
        range.trim().parse::<usize>().unwrap() + 1
    };
    let n = array(&prepare);
    let run = std::fs::read_to_string(slurm.join("run.sbatch")).unwrap();
    assert_eq!(array(&run), n, "prepare and run have the same array");
    let submit = std::fs::read_to_string(slurm.join("submit.sh")).unwrap();
    assert!(
        submit.contains("--dependency=\"afterok:${prepare}\"")
            && submit.contains("--dependency=\"afterok:${run}\"")
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = mnist_manifest(dir.path(), plugins.path(), prune, &edits);
    for step in ["prepare", "run"] {
        run_as_processes(n, step, |i| {
            let mut c = Command::new("bash");
            c.arg(slurm.join(format!("{step}.sbatch")))
                .arg(&manifest)
                .env("KDPRUNE", kdprune_bin)
                .env("SLURM_ARRAY_TASK_ID", i.to_string())
                .env("SLURM_ARRAY_TASK_COUNT", n.to_string())
                .env_remove("KDPRUNE_PLUGIN_PATH")
                .env("KDPRUNE_LOG", "warn");
            c
        });
    }
    let merged = Command::new("bash")
        .arg(slurm.join("merge.sbatch"))
        .arg(&manifest)
        .env("KDPRUNE", kdprune_bin)
        .output()
        .unwrap();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    // 1 method × 2 keeps × 3 seeds × (α = 0, α = 0.5).
    assert_eq!(results_lines(dir.path()).len(), 12);
    let slurm_results = std::fs::read(dir.path().join("out/results.jsonl")).unwrap();

    // Kubernetes: Indexed Jobs; pod i runs the container's command with JOB_COMPLETION_INDEX
    // = i and the job's environment (the image's paths replaced by this machine's).
    let k8s = root.join("deploy/kubernetes");
    let dir2 = tempfile::tempdir().unwrap();
    let manifest2 = mnist_manifest(dir2.path(), plugins.path(), prune, &edits);
    for step in ["prepare", "run", "merge"] {
        let text = std::fs::read_to_string(k8s.join(format!("{step}-job.yaml"))).unwrap();
        let job: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(job["kind"], "Job", "{step}");
        let spec = &job["spec"];
        let completions = spec["completions"].as_u64().unwrap() as usize;
        if step != "merge" {
            assert_eq!(spec["completionMode"], "Indexed", "{step}");
            assert_eq!(spec["parallelism"].as_u64(), Some(completions as u64));
        }
        let container = &spec["template"]["spec"]["containers"][0];
        let command: Vec<String> = container["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let env: Vec<(String, String)> = container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if let Some((_, shards)) = env.iter().find(|(k, _)| k == "SHARDS") {
            assert_eq!(shards.parse::<usize>().unwrap(), completions, "{step}");
        }
        run_as_processes(completions, step, |i| {
            let mut c = Command::new(&command[0]);
            c.args(&command[1..]);
            for (k, v) in &env {
                c.env(k, v);
            }
            c.env("KDPRUNE", kdprune_bin)
                .env("MANIFEST", &manifest2)
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .env_remove("KDPRUNE_PLUGIN_PATH")
                .env("KDPRUNE_LOG", "warn");
            c
        });
    }
    let k8s_results = std::fs::read(dir2.path().join("out/results.jsonl")).unwrap();
    // Both schedulers' sweeps are the same results, byte for byte (the manifests differ only
    // in their output folder, which results name relative to it).
    assert_eq!(slurm_results, k8s_results);
}

/// Results do not change when the code is reorganised: the golden manifest's `results.jsonl`
/// (methods with dynamics and embeddings, two teachers, fixed and auto α) equals the one kept
/// in tests/fixtures/golden, field by field, but for `seconds`, `key` and `config` (the key
/// holds the plugin libraries' SHA-256, which differ from build to build). The file was made
/// on the AVX2 path; a CPU whose kernels are AVX-512 sums in another order, so there the test
/// compares everything but the accuracies (the AVX2 build of scripts/test.sh runs only library
/// tests). `KDPRUNE_BLESS=1` writes the file instead.
#[test]
fn golden_results_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&[
        "kdprune_random",
        "kdprune_el2n",
        "kdprune_forgetting",
        "kdprune_herding",
        "kdprune_nearest_centroid",
        "kdprune_virtual_teacher",
    ]);
    let golden = fixtures().join("golden");
    let text = std::fs::read_to_string(golden.join("manifest.toml"))
        .unwrap()
        .replace("\"OUT\"", &format!("{:?}", dir.path().join("out")))
        .replace("\"PLUGINS\"", &format!("{:?}", plugins.path()))
        .replace(
            "\"DIGITS\"",
            &format!("{:?}", fixtures().join("digits-8x8.csv.gz")),
        );
    let manifest = dir.path().join("golden.toml");
    std::fs::write(&manifest, text).unwrap();
    let out = kdprune(&["run", manifest.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = |text: &str| -> Vec<serde_json::Map<String, serde_json::Value>> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(l).unwrap();
                // The indices' file name holds the plugins' SHA-256 too; its uniqueness is
                // held below.
                for field in ["seconds", "key", "config", "indices"] {
                    v.remove(field);
                }
                v
            })
            .collect()
    };
    let text = std::fs::read_to_string(dir.path().join("out/results.jsonl")).unwrap();
    // One indices file per selection (method, policy, keep, seed), there and of its size.
    let mut names = std::collections::HashMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let group = format!(
            "{} {} {} {}",
            v["method"], v["policy"], v["keep"], v["seed"]
        );
        let name = v["indices"].as_str().unwrap_or("").to_string();
        let kept = kdprune::results::read_npy_u32(&dir.path().join("out").join(&name)).unwrap();
        assert_eq!(kept.len() as u64, v["kept"].as_u64().unwrap(), "{name}");
        assert_eq!(
            names.entry(name.clone()).or_insert(group.clone()),
            &group,
            "{name} shared"
        );
    }
    let got = lines(&text);
    let avx2 = kdprune::train::kernels::isa::Isa::detect().map(|i| i.name()) == Some("avx2");
    let kept = golden.join("results-avx2.jsonl");
    if std::env::var_os("KDPRUNE_BLESS").is_some() {
        let text: String = got
            .iter()
            .map(|v| serde_json::to_string(v).unwrap() + "\n")
            .collect();
        std::fs::write(&kept, text).unwrap();
        return;
    }
    let mut want = lines(&std::fs::read_to_string(&kept).unwrap());
    let mut got = got;
    if !avx2 {
        for v in want.iter_mut().chain(got.iter_mut()) {
            for field in [
                "test_accuracy",
                "teacher_test_accuracy",
                "alpha_search",
                "alpha",
            ] {
                v.remove(field);
            }
        }
    }
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

/// `text` with every figure of the form `23.09 GiB` written `# GiB` (the memory available moves between two runs).
fn without_gib(text: &str) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let is_figure =
            w.parse::<f64>().is_ok() && words.get(i + 1).is_some_and(|n| n.starts_with("GiB"));
        out.push(if is_figure { "#" } else { w });
    }
    out.join(" ")
}

/// `kdprune run manifest` for at most `seconds`; `None` when it was still working then
/// (it is killed).
fn run_for(manifest: &Path, seconds: u64) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kdprune"))
        .args(["run", manifest.to_str().unwrap()])
        .env_remove("KDPRUNE_PLUGIN_PATH")
        .env("KDPRUNE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kdprune runs");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() >= seconds {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Some(Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `check` is `run`'s first stage: on mutants of a small manifest (every field set to
/// out-of-range and wrong-typed values or removed; data paths missing, a device, a folder,
/// empty; the output a file; results.jsonl damaged or a folder), `check` and `run` agree on
/// every one: both pass, or both refuse with the same error line. Only what training itself
/// finds (a diverging loss) may pass `check` and fail `run`.
#[test]
fn check_and_run_agree_on_mutated_manifests() {
    let plugins = plugin_folder(&[
        "kdprune_el2n",
        "kdprune_random",
        "kdprune_nearest_centroid",
        "kdprune_faulty",
    ]);
    let base = format!(
        r#"name = "agree"
seeds = [0]
output = "OUT"
plugin_dirs = [{plugins:?}]

[data]
format = "csv"
train = {digits:?}
label = -1
header = false
holdout = 0.25

[data.normalise]
scale = 16.0

[[teacher]]
plugin = "nearest-centroid"

[student]
hidden = [8]
epochs = 1
batch_size = 64
lr = 0.05

[distillation]
alphas = [0.0, 0.5]
temperature = 4.0

[dynamics]
runs = 1
epochs = 1
hidden = [8]

[[prune]]
method = "el2n"
keep = [0.3]
"#,
        plugins = plugins.path(),
        digits = fixtures().join("digits-8x8.csv.gz"),
    );
    let scratch = tempfile::tempdir().unwrap();
    let empty = scratch.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let values = [
        "-1",
        "0",
        "1e-9",
        "1e30",
        "\"x\"",
        "[]",
        "true",
        "nan",
        "4294967296",
        "[2000000000]",
    ];
    let mut mutants: Vec<(String, String, Option<&[u8]>)> = Vec::new();
    for (i, line) in base.lines().enumerate() {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        let with = |value: &str| {
            let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
            lines[i] = format!("{key} = {value}");
            lines.join("\n") + "\n"
        };
        let mut removed: Vec<&str> = base.lines().collect();
        removed.remove(i);
        mutants.push((format!("{key} removed"), removed.join("\n") + "\n", None));
        for value in values {
            mutants.push((format!("{key} = {value}"), with(value), None));
        }
        if key == "train" {
            for path in [
                Path::new("/dev/zero"),
                scratch.path(),
                empty.as_path(),
                &scratch.path().join("missing.csv"),
            ] {
                mutants.push((
                    format!("train = {path:?}"),
                    with(&format!("{path:?}")),
                    None,
                ));
            }
        }
    }
    // Teachers that fail on their first batch.
    for teacher in ["faulty-teacher-infinite", "faulty-teacher-panics"] {
        let text = base.replace("\"nearest-centroid\"", &format!("{teacher:?}"));
        mutants.push((format!("teacher {teacher}"), text, None));
    }
    // The output folder's state.
    let results: [(&str, &[u8]); 3] = [
        ("a damaged middle line", b"{\"not\": \"a result\"}\n\n{}\n"),
        ("NUL bytes", b"\0\0\0\0\n{}\n"),
        ("invalid UTF-8", b"\xff\xfe{\n"),
    ];
    for (what, bytes) in results {
        mutants.push((
            format!("results.jsonl with {what}"),
            base.clone(),
            Some(bytes),
        ));
    }
    let mut disagree = Vec::new();
    for (case, text, results_bytes) in &mutants {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let text = text.replace("\"OUT\"", &format!("{out:?}"));
        let manifest = dir.path().join("m.toml");
        std::fs::write(&manifest, &text).unwrap();
        if let Some(bytes) = results_bytes {
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(out.join("results.jsonl"), bytes).unwrap();
        }
        let check = kdprune(&["check", manifest.to_str().unwrap()]);
        // The first seconds of run: one still training then has refused nothing.
        let Some(run) = run_for(&manifest, 20) else {
            if let Some(c) = check.code.ne(&0).then(|| error_line(&check)) {
                disagree.push(format!("{case}:\n  check: {c}\n  run:   still training"));
            }
            continue;
        };
        let line = |o: &Output| {
            (o.code != 0).then(|| {
                o.stderr
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("error:"))
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!(
                            "exit {} without an error line: {}",
                            o.code,
                            o.stderr
                                .lines()
                                .find(|l| l.contains("panicked"))
                                .unwrap_or("")
                        )
                    })
            })
        };
        // The memory available moves between the two.
        let (c, r) = (
            line(&check).map(|l| without_gib(&l)),
            line(&run).map(|l| without_gib(&l)),
        );
        let trained_then_failed =
            c.is_none() && r.as_deref().is_some_and(|l| l.contains("diverged"));
        if c != r && !trained_then_failed {
            disagree.push(format!("{case}:\n  check: {c:?}\n  run:   {r:?}"));
        }
    }
    // A folder in place of results.jsonl.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("results.jsonl")).unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(&manifest, base.replace("\"OUT\"", &format!("{out:?}"))).unwrap();
    let check = error_line(&kdprune(&["check", manifest.to_str().unwrap()]));
    let run = error_line(&kdprune(&["run", manifest.to_str().unwrap()]));
    if check != run {
        disagree.push(format!(
            "results.jsonl a folder:\n  check: {check}\n  run:   {run}"
        ));
    }
    assert!(
        disagree.is_empty(),
        "{} of {} mutants:\n{}",
        disagree.len(),
        mutants.len() + 1,
        disagree.join("\n")
    );
}

/// A reader that has gone (`| true` closes the pipe before kdprune writes) ends kdprune
/// quietly, never with a panic.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let plugins = plugin_folder(&["kdprune_random", "kdprune_el2n", "kdprune_herding"]);
    let script = format!(
        "{:?} plugins --plugin-dir {:?} --verbose | true; exit ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_kdprune"),
        plugins.path()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// `--set section.field=value` changes one setting for one command, checked like the file.
#[test]
fn set_changes_one_setting_and_is_checked_like_the_file() {
    let plugins = plugin_folder(&["kdprune_random"]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(
        &manifest,
        format!(
            "output = {:?}\nplugin_dirs = [{:?}]\n\n[data]\nformat = \"csv\"\ntrain = {:?}\nlabel = -1\nheader = false\nholdout = 0.25\n\n[student]\nhidden = [8]\nepochs = 3\nlr = 0.05\n\n[[prune]]\nmethod = \"random\"\nkeep = [0.5]\n",
            dir.path().join("out"),
            plugins.path(),
            fixtures().join("digits-8x8.csv.gz"),
        ),
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let line = error_line(&kdprune(&["check", m, "--set", "student.epohcs=1"]));
    assert!(
        line.contains("unknown field `epohcs`") && line.contains("did you mean \"epochs\""),
        "{line}"
    );
    let line = error_line(&kdprune(&["check", m, "--set", "prune.2.keep=[0.1]"]));
    assert!(line.contains("[[prune]] has 1 entries"), "{line}");
    // A command that reads no manifest refuses it rather than ignore it.
    let line = error_line(&kdprune(&[
        "report",
        dir.path().to_str().unwrap(),
        "--set",
        "student.epochs=1",
    ]));
    assert!(line.contains("reads no manifest"), "{line}");
    // `--json`: the same as structured fields, the `--set` value among the settings.
    let out = kdprune(&["check", m, "--json", "--set", "student.epochs=2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let facts: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(facts["ok"], true);
    assert_eq!(facts["cells"]["to_train"], 1);
    assert_eq!(facts["settings"]["student"]["epochs"], 2);
    assert_eq!(facts["settings"]["student"]["layers"][0], "dense 8");
    assert_eq!(facts["methods"][0]["method"], "random");
    assert!(facts["training_estimate_seconds"].as_f64().is_some());
    // check says how many cells and about how long their training takes.
    let out = kdprune(&["check", m, "--set", "student.epochs=1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("cells: 1 student(s) to train")
            && out.stdout.contains("time: about")
            && out.stdout.contains("the median of 3 epochs"),
        "{}",
        out.stdout
    );
    let other = dir.path().join("other");
    let out = kdprune(&[
        "run",
        m,
        "--set",
        "student.epochs=1",
        "--set",
        &format!("output={}", other.display()),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(other.join("results.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["student"]["epochs"], 1);
    assert!(
        !dir.path().join("out/results.jsonl").exists(),
        "the file's output is untouched"
    );
}

/// A report of `alpha = "auto"` cells only (beside α = 0): a real browser draws its plots.
#[test]
fn a_report_of_auto_alpha_cells_draws_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for (k, keep) in [0.1f64, 0.3, 0.5].into_iter().enumerate() {
        for seed in 0..2u64 {
            for auto in [false, true] {
                let line = serde_json::json!({
                    "experiment": "auto", "method": "random", "params": {}, "policy": "hardest",
                    "keep": keep, "alpha": if auto { 0.5 } else { 0.0 },
                    "alpha_rule": if auto { Some(kdprune::train::alpha_search::RULE) } else { None },
                    "temperature": 4.0, "teacher": if auto { Some("big") } else { None },
                    "seed": seed, "kept": 10, "train_size": 100,
                    "test_accuracy": 0.7 + 0.05 * k as f64 + if auto { 0.03 } else { 0.0 },
                    "teacher_test_accuracy": if auto { Some(0.9) } else { None },
                    "indices": "", "student": {},
                    "key": format!("{keep}{seed}{auto}"), "config": format!("{keep}{auto}"),
                });
                lines += &format!("{line}\n");
            }
        }
    }
    std::fs::write(dir.path().join("results.jsonl"), lines).unwrap();
    let out = kdprune(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let page = dir.path().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "accuracy and best α against keep"
    );
    assert!(html.contains("Not drawn: accuracy against teacher capacity"));
    let shot = dir.path().join("shot.png");
    screenshot(&page, &shot);
    // The method's colour (Okabe–Ito blue) draws its lines, bands and markers.
    let blue = pixels_near(&shot, [0, 114, 178]);
    assert!(blue > 300, "blue {blue}");
}

/// The score files and kept indices of each method of a `kdprune score` summary, as bytes.
fn score_files(output: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("scores/summary.json")).unwrap())
            .unwrap();
    let mut files = std::collections::BTreeMap::new();
    for m in summary["methods"].as_array().unwrap() {
        let name = m["method"].as_str().unwrap();
        let mut rels: Vec<&str> = m["scores"].as_str().into_iter().collect();
        for k in m["keeps"].as_array().unwrap() {
            rels.extend(k["indices"].as_str());
            rels.extend(k["scores"].as_str());
        }
        for rel in rels {
            files.insert(
                format!("{name}: {rel}"),
                std::fs::read(output.join(rel)).unwrap(),
            );
        }
    }
    files
}

#[test]
fn dynamics_exported_and_read_back_score_the_same_bit_for_bit() {
    let proxy_methods = [
        "el2n",
        "grand",
        "forgetting",
        "aum",
        "dynamic-uncertainty",
        "tdds",
        "entropy",
        "margin",
        "herding",
        "k-center",
        "moderate",
        "prototypes",
        "craig",
        "glister",
        "gradmatch",
        "contextual-diversity",
    ];
    // Methods that return a subset have no scores file.
    let subsets = [
        "herding",
        "k-center",
        "craig",
        "glister",
        "gradmatch",
        "contextual-diversity",
    ];
    let prune = |methods: &[&str]| {
        methods
            .iter()
            .map(|m| format!("[[prune]]\nmethod = \"{m}\"\nkeep = [0.3]\n\n"))
            .collect::<String>()
    };
    let recorded = tempfile::tempdir().unwrap();
    let body = format!(
        "[dynamics]\nepochs = 3\nearly_steps = [0]\n\n{}",
        prune(&proxy_methods)
    );
    let path = mnist_manifest(recorded.path(), built_plugins(), &body, &[]);
    let out = kdprune(&["score", path.to_str().unwrap(), "--export-dynamics"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let exported = recorded.path().join("out/scores");
    assert!(exported.join("dynamics/pass/grad_norm.npy").exists());
    assert!(exported.join("dynamics/batch/logits.npy").exists());
    assert!(exported.join("embeddings/proxy.npy").exists());
    assert!(exported.join("embeddings/grad.npy").exists());
    let expected = score_files(&recorded.path().join("out"));
    assert_eq!(
        expected.len(),
        proxy_methods.len() * 2 - subsets.len(),
        "{:?}",
        expected.keys()
    );

    // Read back through `[dynamics] from`: no proxy is trained, the same scores come out.
    let imported = tempfile::tempdir().unwrap();
    let body = format!(
        "[dynamics]\nfrom = \"{}\"\n\n{}",
        exported.display(),
        prune(&proxy_methods)
    );
    let path = mnist_manifest(imported.path(), built_plugins(), &body, &[]);
    let out = kdprune(&["check", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("dynamics: read from"), "{}", out.stdout);
    let out = kdprune(&["score", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = score_files(&imported.path().join("out"));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (file, bytes) in &expected {
        assert!(got[file] == *bytes, "{file} differs");
    }

    // TDDS's layout: each epoch's logits in a shuffled order with its indices.
    let logits: ndarray::Array4<f32> =
        ndarray_npy::read_npy(exported.join("dynamics/batch/logits.npy")).unwrap();
    let (_, epochs, n, _) = logits.dim();
    let tdds = imported.path().join("tdds-run/npy");
    std::fs::create_dir_all(&tdds).unwrap();
    for e in 0..epochs {
        let order: Vec<i64> = (0..n as i64)
            .map(|j| (j * 7 + e as i64) % n as i64)
            .collect();
        let rows =
            ndarray::Array2::from_shape_fn((n, 10), |(j, c)| logits[[0, e, order[j] as usize, c]]);
        ndarray_npy::write_npy(tdds.join(format!("{e}_Output.npy")), &rows).unwrap();
        ndarray_npy::write_npy(
            tdds.join(format!("{e}_Index.npy")),
            &ndarray::Array1::from(order),
        )
        .unwrap();
    }
    let body = format!(
        "[dynamics]\nfrom = \"{}\"\nlayout = \"tdds\"\n\n{}",
        tdds.parent().unwrap().display(),
        prune(&["tdds"])
    );
    let path = mnist_manifest(
        imported.path(),
        built_plugins(),
        &body,
        &[("/out\"", "/out-tdds\"")],
    );
    let out = kdprune(&["score", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = score_files(&imported.path().join("out-tdds"));
    for (file, bytes) in got {
        assert!(expected[&file] == bytes, "tdds layout: {file} differs");
    }

    // A damaged file is refused by check and by run, naming it; a method whose record is
    // missing and cannot be computed names what to write.
    let el2n = exported.join("dynamics/pass/el2n.npy");
    let full = std::fs::read(&el2n).unwrap();
    std::fs::write(&el2n, &full[..full.len() - 10]).unwrap();
    let path = mnist_manifest(
        imported.path(),
        built_plugins(),
        &format!(
            "[dynamics]\nfrom = \"{}\"\n\n{}",
            exported.display(),
            prune(&["el2n"])
        ),
        &[("/out\"", "/out-bad\"")],
    );
    for command in ["check", "run"] {
        let out = kdprune(&[command, path.to_str().unwrap()]);
        assert_ne!(out.code, 0, "{command}");
        let line = error_line(&out);
        assert!(
            line.contains("el2n.npy") && line.contains("not a readable"),
            "{command}: {line}"
        );
    }
    std::fs::remove_file(&el2n).unwrap();
    std::fs::remove_file(exported.join("dynamics/pass/grad_norm.npy")).unwrap();
    let path = mnist_manifest(
        imported.path(),
        built_plugins(),
        &format!(
            "[dynamics]\nfrom = \"{}\"\n\n{}",
            exported.display(),
            prune(&["el2n", "grand"])
        ),
        &[("/out\"", "/out-bad\"")],
    );
    let out = kdprune(&["check", path.to_str().unwrap()]);
    let line = error_line(&out);
    assert!(
        line.contains("grad_norm.npy: missing") && line.contains("penultimate"),
        "{line}"
    );

    // The fields that set a proxy do not go with records made elsewhere.
    let path = mnist_manifest(
        imported.path(),
        built_plugins(),
        &format!(
            "[dynamics]\nfrom = \"{}\"\nepochs = 3\nruns = 2\n\n{}",
            exported.display(),
            prune(&["el2n"])
        ),
        &[("/out\"", "/out-bad\"")],
    );
    let line = error_line(&kdprune(&["check", path.to_str().unwrap()]));
    assert!(
        line.contains("manifest.toml:") && line.contains("epochs, runs"),
        "{line}"
    );
}

#[test]
fn infobatch_skips_well_learned_examples_and_records_how_many_it_saw() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&["kdprune_random"]);
    let path = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.5]\n",
        &[("epochs = 4", "epochs = 4\ninfobatch = { ratio = 0.5 }")],
    );
    let out = kdprune(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let results = results_lines(dir.path());
    assert_eq!(results.len(), 2, "α 0 and 0.5");
    for r in &results {
        let (kept, seen) = (
            r["kept"].as_u64().unwrap(),
            r["examples_seen"].as_u64().unwrap(),
        );
        // Epoch 1 sees all (every score starts equal), epochs 2 and 3 skip about a quarter
        // (half of those below the mean loss), epoch 4 (past delta · E = 3.5) sees all.
        assert!(seen < 4 * kept && seen > 3 * kept, "{seen} of {}", 4 * kept);
        assert!(r["test_accuracy"].as_f64().unwrap() > 0.8, "{r}");
        assert_eq!(r["student"]["infobatch"]["ratio"], 0.5);
    }
    let bad = mnist_manifest(
        dir.path(),
        plugins.path(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.5]\n",
        &[("epochs = 4", "epochs = 4\ninfobatch = { ratio = 1.0 }")],
    );
    let line = error_line(&kdprune(&["check", bad.to_str().unwrap()]));
    assert!(
        line.contains("infobatch ratio = 1 must be in [0, 0.9]"),
        "{line}"
    );
}

#[test]
fn bench_reports_where_the_time_goes_on_a_limited_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = mnist_manifest(
        dir.path(),
        built_plugins(),
        "[[prune]]\nmethod = \"random\"\nkeep = [0.5]\n",
        &[],
    );
    let out = kdprune(&[
        "bench",
        path.to_str().unwrap(),
        "--student-only",
        "--layers",
        "--limit",
        "640",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["train_examples"], 640);
    let times = report["layer_times"].as_array().unwrap();
    let find = |kind: &str, pass: &str| {
        times
            .iter()
            .find(|t| t["kind"] == kind && t["pass"] == pass)
            .unwrap_or_else(|| panic!("{kind} {pass} in {times:?}"))
    };
    // 640 examples in batches of the manifest's size: every dense layer runs once per batch
    // (per shard of it) each way.
    assert!(find("dense", "forward")["calls"].as_u64().unwrap() >= 5);
    assert!(find("dense", "backward")["seconds"].as_f64().unwrap() > 0.0);
    assert!(report["profiled_seconds"].as_f64().unwrap() > 0.0);
    // Without --layers there is no table.
    let out = kdprune(&[
        "bench",
        path.to_str().unwrap(),
        "--student-only",
        "--limit",
        "640",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("layer_times"), "{}", out.stdout);
}
