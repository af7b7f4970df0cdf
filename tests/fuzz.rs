//! Mutation fuzzing of every reader of user input, on stable Rust: the committed seed corpus
//! in `tests/corpus/<target>/` is mutated (bit flips, byte changes, insertions of
//! troublesome text, deletions, truncations, duplications) by a seeded generator, and each
//! mutant is parsed under `catch_unwind`. What must hold: no panic, and every error one line.
//! `KDPRUNE_FUZZ_ITERS` (default 1500 per target) bounds the run for CI; the seed of a
//! failure is printed so that it can be replayed and its input added to the corpus.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

fn iterations() -> usize {
    std::env::var("KDPRUNE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

const TOKENS: &[&[u8]] = &[
    b"nan",
    b"inf",
    b"-1",
    b"1e9",
    b"3.5",
    b"99999999999999999999",
    b"\"",
    b",",
    b"\n",
    b"\x00",
    b"\xff\xff\xff\xff",
    b"[[prune]]",
    b"keep = [",
    b"= ",
    b"{",
    b"}",
    b"'",
    b"\\u0000",
];

fn mutate(seed: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.gen_range(1..5) {
        let len = v.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = rng.gen();
            }
            2 => {
                let i = rng.gen_range(0..=len);
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                v.splice(i..i, t.iter().copied());
            }
            3 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = (a + rng.gen_range(0..16)).min(len);
                v.drain(a..b);
            }
            4 => v.truncate(rng.gen_range(0..=len)),
            5 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = (a + rng.gen_range(1..32)).min(len);
                let chunk = v[a..b].to_vec();
                v.splice(a..a, chunk);
            }
            _ => {
                // A number field of the header set to an extreme value.
                if len >= 8 {
                    let i = rng.gen_range(0..len - 4);
                    v[i..i + 4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
                }
            }
        }
    }
    v
}

/// Runs `parse` on mutants of every seed of `target`; `parse` returns the error text, if any.
fn fuzz(target: &str, mut parse: impl FnMut(&Path, &[u8]) -> Option<String>) {
    let seeds = corpus(target);
    let dir = tempfile::tempdir().unwrap();
    let n = iterations();
    for i in 0..n {
        let (seed_path, seed) = &seeds[i % seeds.len()];
        let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
        let mutant = mutate(seed, &mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| parse(dir.path(), &mutant)));
        match outcome {
            Err(_) => panic!(
                "{target}: a panic on mutant {i} of {} (replay: seed {i})",
                seed_path.display()
            ),
            Ok(Some(error)) => assert!(
                !error.contains('\n'),
                "{target}: mutant {i}: a multi-line error: {error}"
            ),
            Ok(None) => {}
        }
    }
}

#[test]
fn idx_reader() {
    let labels = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/idx/labels-idx1"),
    )
    .unwrap();
    fuzz("idx", |dir, bytes| {
        let images = dir.join("images");
        let label_file = dir.join("labels");
        std::fs::write(&images, bytes).unwrap();
        std::fs::write(&label_file, &labels).unwrap();
        let a = kdprune::data::read_idx_pair(&images, &label_file, None)
            .err()
            .map(|e| e.to_string());
        // The same bytes as the labels file.
        std::fs::write(&label_file, bytes).unwrap();
        let _ = kdprune::data::read_idx_pair(&images, &label_file, Some(3));
        a
    });
}

#[test]
fn csv_reader() {
    fuzz("csv", |dir, bytes| {
        let p = dir.join("d.csv");
        std::fs::write(&p, bytes).unwrap();
        let header = bytes.starts_with(b"a,");
        let options = kdprune::data::CsvOptions {
            label: if header {
                kdprune::data::LabelColumn::Name("lettr".into())
            } else {
                kdprune::data::LabelColumn::Index(-1)
            },
            header: Some(header),
            delimiter: b',',
            classes: None,
            num_classes: None,
            sample_shape: None,
        };
        kdprune::data::read_csv(&p, &options)
            .err()
            .map(|e| e.to_string())
    });
}

#[test]
fn npy_reader() {
    fuzz("npy", |dir, bytes| {
        let p = dir.join("i.npy");
        std::fs::write(&p, bytes).unwrap();
        kdprune::results::read_npy_u32(&p)
            .err()
            .map(|e| e.to_string())
    });
}

#[test]
fn results_reader() {
    fuzz("results", |dir, bytes| {
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("results.jsonl"), bytes).unwrap();
        kdprune::results::ResultStore::open(&out)
            .err()
            .map(|e| e.to_string())
    });
}

#[test]
fn manifest_parser() {
    fuzz("manifest", |_, bytes| {
        let text = String::from_utf8_lossy(bytes);
        kdprune::manifest::parse(Path::new("/corpus/m.toml"), &text)
            .err()
            .map(|e| e.to_string())
    });
}

#[test]
fn npy_data_reader() {
    let labels = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/npy/indices.npy");
    fuzz("npy", |dir, bytes| {
        let x = dir.join("x.npy");
        std::fs::write(&x, bytes).unwrap();
        let a = kdprune::data::read_npy_pair(&x, &labels, None)
            .err()
            .map(|e| e.to_string());
        let _ = kdprune::data::read_npy_pair(&labels, &x, None);
        a
    });
}
