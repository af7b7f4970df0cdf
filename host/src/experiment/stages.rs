//! The stages of a run after its plan: the data (read, and the student's views), the inputs
//! (teachers made ready, inputs computed once), and a cell's saved student. Shared by `run`,
//! `score`, `check` and `prepare`.

use std::time::Instant;

use super::plan::dynamics_context;
use crate::data::Dataset;
use crate::inputs::{Inputs, Needs};
use crate::manifest::Manifest;
use crate::plugins::Registry;
use crate::teacher::inputs::TeacherInputs;
use crate::teacher::spec::{TeacherSource, TeacherSpec};
use crate::teacher::{Teacher, TeacherLogits};
use crate::train;
use crate::Error;

/// Writes a cell's student as `students/<key>.safetensors` and `students/<key>.onnx`.
pub(crate) fn save_student(
    model: &train::Network,
    output: &std::path::Path,
    key: &str,
) -> Result<(), Error> {
    let dir = output.join("students");
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.clone(),
        message: crate::io_message(&e),
    })?;
    let weights = dir.join(format!("{key}.safetensors"));
    model
        .save_safetensors(&weights)
        .map_err(|message| Error::Io {
            path: weights.clone(),
            message,
        })?;
    let onnx = dir.join(format!("{key}.onnx"));
    std::fs::write(&onnx, model.to_onnx()).map_err(|e| Error::Io {
        path: onnx,
        message: crate::io_message(&e),
    })
}

/// A teacher made ready by the inputs stage.
pub(crate) struct ReadyTeacher<'a> {
    /// Kept for online distillation, which runs it on every augmented batch (`None` for an
    /// ensemble, which is never run itself).
    pub(crate) live: Option<Teacher<'a>>,
    /// `[N, C]` on the training set.
    pub(crate) train: TeacherLogits,
    /// `[M, C]` on the test set.
    pub(crate) test: TeacherLogits,
    pub(crate) test_accuracy: f64,
}

/// What the inputs stage hands on.
pub(crate) struct InputStage<'a> {
    /// One entry per `manifest.teachers`, `None` for a teacher no pending cell uses.
    pub(crate) teachers: Vec<Option<ReadyTeacher<'a>>>,
    pub(crate) inputs: Inputs,
    pub(crate) time: TimeSplit,
}

/// Stage 2: the `needed` teachers ([`super::plan::needed_teachers`]; `teachers` are the manifest's with
/// trained ones made into models) and every input `needs` names, each computed once (and
/// cached by content).
pub(crate) fn input_stage<'a>(
    manifest: &'a Manifest,
    teachers: &'a [TeacherSpec],
    needed: &[bool],
    registry: &'a Registry,
    (raw_train, raw_test): (&'a Dataset, &Dataset),
    train_set: &Dataset,
    needs: &Needs,
) -> Result<InputStage<'a>, Error> {
    let mut stage = InputStage {
        teachers: Vec::new(),
        inputs: Inputs::default(),
        time: TimeSplit::default(),
    };
    for (i, spec) in teachers.iter().enumerate() {
        if !needed[i] {
            stage.teachers.push(None);
            continue;
        }
        let started = Instant::now();
        if let TeacherSource::Ensemble { members, combine } = &spec.source {
            let ready: Vec<&ReadyTeacher<'_>> = members
                .iter()
                .map(|&m| {
                    stage.teachers[m]
                        .as_ref()
                        .expect("members are made ready first")
                })
                .collect();
            let trains: Vec<&TeacherLogits> = ready.iter().map(|r| &r.train).collect();
            let tests: Vec<&TeacherLogits> = ready.iter().map(|r| &r.test).collect();
            let on_train = TeacherLogits::combine(&trains, *combine);
            let on_test = TeacherLogits::combine(&tests, *combine);
            let accuracy = on_test.accuracy(&raw_test.labels);
            tracing::info!(teacher = %spec.name, members = ready.len(), combine = ?combine, test_accuracy = accuracy, "ensemble ready");
            stage.teachers.push(Some(ReadyTeacher {
                live: None,
                train: on_train,
                test: on_test,
                test_accuracy: accuracy,
            }));
            stage.time.teacher += started.elapsed().as_secs_f64();
            continue;
        }
        let mut teacher = Teacher::new(
            spec,
            registry,
            raw_train,
            &manifest.cache_dir,
            manifest.seeds[0],
        )?;
        // Kept for online distillation, it must not spin beside the student's products.
        teacher.set_bulk(!manifest.student.augment.online_teacher);
        let on_train = teacher.logits(raw_train, "train")?;
        let on_test = teacher.logits(raw_test, "test")?;
        let accuracy = on_test.accuracy(&raw_test.labels);
        tracing::info!(
            teacher = %spec.name,
            kind = ?on_train.kind,
            train_accuracy = on_train.accuracy(&raw_train.labels),
            test_accuracy = accuracy,
            "teacher ready"
        );
        stage.teachers.push(Some(ReadyTeacher {
            live: Some(teacher),
            train: on_train,
            test: on_test,
            test_accuracy: accuracy,
        }));
        stage.time.teacher += started.elapsed().as_secs_f64();
    }
    let started = Instant::now();
    if needs.reads_teacher() {
        let first = stage.teachers[0]
            .as_mut()
            .expect("the first teacher is made ready when a method reads it");
        let provider = TeacherInputs {
            live: first.live.as_mut(),
            train: &first.train,
            set: raw_train,
        };
        stage.inputs.gather(needs, provider)?;
    }
    stage.time.teacher += started.elapsed().as_secs_f64();
    let started = Instant::now();
    stage
        .inputs
        .gather(needs, &dynamics_context(manifest, train_set))?;
    stage.time.dynamics += started.elapsed().as_secs_f64();
    Ok(stage)
}

/// Where the time of a run went, seconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TimeSplit {
    /// The whole run, from loading plugins to the last result.
    pub total: f64,
    pub teacher: f64,
    pub dynamics: f64,
    pub scoring: f64,
    pub training: f64,
}

/// The data of a run: the sets as read (what teachers see) and the student's views.
pub(crate) struct DataStage {
    /// `[N, ...]` and `[M, ...]` as read (after any holdout split, by the first seed).
    pub(crate) raw_train: Dataset,
    pub(crate) raw_test: Dataset,
    /// The same, normalised by `norm` (what students and the proxy see).
    pub(crate) train: Dataset,
    pub(crate) test: Dataset,
    pub(crate) norm: crate::data::Normalisation,
}

/// Reads the manifest's data and makes the student's views of it.
pub(crate) fn load_data(manifest: &Manifest) -> Result<DataStage, Error> {
    let (raw_train, raw_test) = crate::data::load(&manifest.data, manifest.seeds[0])?;
    tracing::info!(
        train = raw_train.len(),
        test = raw_test.len(),
        classes = raw_train.num_classes,
        shape = ?raw_train.sample_shape,
        "data loaded"
    );
    let (train, test, norm) =
        super::plan::normalise(&manifest.data.normalise, &raw_train, &raw_test)?;
    Ok(DataStage {
        raw_train,
        raw_test,
        train,
        test,
        norm,
    })
}
