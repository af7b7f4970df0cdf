//! Delimited text (CSV, optionally gzip): one example per line, numeric features, and a label
//! column chosen by name (needs a header) or by position.

use std::path::Path;

use ndarray::Array2;

use super::dataset::{check_label_range, infer_classes, read_maybe_gz, DataError, Dataset};

/// Which column holds the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelColumn {
    /// A header name.
    Name(String),
    /// A position; negative counts from the end (`-1` is the last column).
    Index(i64),
}

/// How to read a CSV file.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub label: LabelColumn,
    /// Whether the first line is a header; `None` detects it (a non-numeric feature field).
    pub header: Option<bool>,
    pub delimiter: u8,
    /// Class names in label order. Labels that are not integers are looked up here; when
    /// `None`, integer labels are used as they are and text labels are sorted and numbered.
    pub classes: Option<Vec<String>>,
    pub num_classes: Option<usize>,
    /// Shape of one example; `[D]` when `None`.
    pub sample_shape: Option<Vec<usize>>,
}

/// Reads a CSV file into a data set. Returns the class names when labels were text (the test
/// file must then be read with the same names in [`CsvOptions::classes`]).
pub fn read_csv(
    path: &Path,
    options: &CsvOptions,
) -> Result<(Dataset, Option<Vec<String>>), DataError> {
    let bytes = read_maybe_gz(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        DataError::format(path, format!("not UTF-8 text ({e}); is this a CSV file?"))
    })?;
    let records = csv_records(path, text, options.delimiter)?;
    let first = records
        .first()
        .map(|(_, f)| f.as_slice())
        .ok_or_else(|| DataError::format(path, "the file is empty"))?;
    let ncols = first.len();
    if ncols < 2 {
        return Err(DataError::format(
            path,
            format!(
                "only one column with delimiter {:?}; set [data] delimiter",
                options.delimiter as char
            ),
        ));
    }
    let names = has_header(options, first).then(|| {
        first
            .iter()
            .map(|s| s.trim_matches('"').to_string())
            .collect::<Vec<_>>()
    });
    let label_col = label_column(path, &options.label, names.as_deref(), ncols)?;
    let rows = &records[usize::from(names.is_some())..];
    let (features, raw_labels) = parse_rows(path, rows, ncols, label_col)?;
    let n = raw_labels.len();
    if n == 0 {
        return Err(DataError::format(path, "no examples after the header"));
    }
    let (labels, class_names) = map_labels(path, &raw_labels, options)?;
    let num_classes = count_classes(path, &labels, class_names.as_deref(), options.num_classes)?;
    check_label_range(path, labels.iter().map(|&y| y as u64), num_classes)?;
    let d = ncols - 1;
    let sample_shape = options.sample_shape.clone().unwrap_or_else(|| vec![d]);
    if sample_shape.iter().product::<usize>() != d {
        return Err(DataError::format(
            path,
            format!("[data] sample_shape {sample_shape:?} does not hold the {d} feature columns"),
        ));
    }
    let features = Array2::from_shape_vec((n, d), features)
        .map_err(|e| DataError::format(path, e.to_string()))?;
    let ds = Dataset::new(features, sample_shape, labels, num_classes)
        .map_err(|e| DataError::format(path, e.to_string()))?;
    Ok((ds, class_names))
}

/// The file's records through the `csv` crate: quoted fields (with delimiters or quotes
/// inside), CRLF line ends; blank lines skipped. Each record keeps its 0-based line number.
fn csv_records(
    path: &Path,
    text: &str,
    delimiter: u8,
) -> Result<Vec<(usize, Vec<String>)>, DataError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            DataError::format(path, format!("not readable as CSV: {}", crate::one_line(e)))
        })?;
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line() as usize - 1);
        records.push((line, record.iter().map(str::to_string).collect()));
    }
    Ok(records)
}

/// Whether the first record is a header: as the options say, else when the label is named or
/// more than one field of it is not a number.
fn has_header(options: &CsvOptions, first: &[String]) -> bool {
    match options.header {
        Some(h) => h,
        None => {
            matches!(options.label, LabelColumn::Name(_))
                || first.iter().filter(|f| f.parse::<f64>().is_err()).count() > 1
        }
    }
}

/// The label column's position among `ncols`, by header name or by (negative from the end)
/// position.
fn label_column(
    path: &Path,
    label: &LabelColumn,
    names: Option<&[String]>,
    ncols: usize,
) -> Result<usize, DataError> {
    match label {
        LabelColumn::Name(name) => {
            let names = names.ok_or_else(|| {
                DataError::format(path, format!("label column {name:?} is named but the file has no header; give its position instead"))
            })?;
            names.iter().position(|n| n == name).ok_or_else(|| {
                DataError::format(
                    path,
                    format!("no column named {name:?}; the header has {names:?}"),
                )
            })
        }
        LabelColumn::Index(i) => {
            let idx = if *i < 0 { ncols as i64 + i } else { *i };
            if idx < 0 || idx >= ncols as i64 {
                return Err(DataError::format(
                    path,
                    format!("label column {i} is outside the {ncols} columns"),
                ));
            }
            Ok(idx as usize)
        }
    }
}

/// The rows' features, `N·(ncols − 1)` values row after row, and their raw labels `[N]`; a
/// row of another width or a field that is not a finite number is refused with its line.
fn parse_rows<'a>(
    path: &Path,
    rows: &'a [(usize, Vec<String>)],
    ncols: usize,
    label_col: usize,
) -> Result<(Vec<f32>, Vec<&'a str>), DataError> {
    let mut features = Vec::new();
    let mut raw_labels = Vec::new();
    for (line_no, fields) in rows {
        if fields.len() != ncols {
            return Err(DataError::format(
                path,
                format!(
                    "line {}: {} fields, expected {ncols}; the file is truncated or malformed",
                    line_no + 1,
                    fields.len()
                ),
            ));
        }
        for (j, field) in fields.iter().enumerate() {
            if j == label_col {
                raw_labels.push(field.trim_matches('"'));
                continue;
            }
            let v: f32 = field
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .ok_or_else(|| {
                    DataError::format(
                        path,
                        format!(
                            "line {}, column {}: {field:?} is not a finite number; fix or drop the row",
                            line_no + 1,
                            j + 1
                        ),
                    )
                })?;
            features.push(v);
        }
    }
    Ok((features, raw_labels))
}

/// The number of classes: of the names, else [`infer_classes`].
fn count_classes(
    path: &Path,
    labels: &[u32],
    class_names: Option<&[String]>,
    declared: Option<usize>,
) -> Result<usize, DataError> {
    match class_names {
        Some(names) => Ok(names.len()),
        None => infer_classes(path, labels, declared),
    }
}

/// The most classes a numeric label column may imply (a label of 1e9 must not allocate 1e9
/// classes).
const MAX_CLASSES: u32 = 1 << 16;

fn map_labels(
    path: &Path,
    raw: &[&str],
    options: &CsvOptions,
) -> Result<(Vec<u32>, Option<Vec<String>>), DataError> {
    if let Some(classes) = &options.classes {
        let labels = raw
            .iter()
            .enumerate()
            .map(|(i, r)| {
                classes
                    .iter()
                    .position(|c| c == r)
                    .map(|p| p as u32)
                    .ok_or_else(|| {
                        DataError::format(
                            path,
                            format!(
                                "example {i}: label {r:?} is not one of the classes {classes:?}"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((labels, Some(classes.clone())));
    }
    // Numeric labels must be class indices: non-negative integers below MAX_CLASSES.
    let numeric = raw.iter().all(|r| r.parse::<f64>().is_ok());
    match numeric {
        true => {
            let labels = raw
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let v: f64 = r.parse().unwrap_or(f64::NAN);
                    if v.is_finite() && v.fract() == 0.0 && v >= 0.0 && v < MAX_CLASSES as f64 {
                        Ok(v as u32)
                    } else {
                        Err(DataError::format(
                            path,
                            format!(
                                "example {i}: label {r:?} is not a class index (an integer in 0..{MAX_CLASSES}); fix the label column or name the classes in [data] classes"
                            ),
                        ))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((labels, None))
        }
        false => {
            let mut names: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
            names.sort();
            names.dedup();
            let labels = raw
                .iter()
                .map(|r| names.binary_search(&r.to_string()).unwrap_or(0) as u32)
                .collect();
            Ok((labels, Some(names)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(label: LabelColumn) -> CsvOptions {
        CsvOptions {
            label,
            header: None,
            delimiter: b',',
            classes: None,
            num_classes: None,
            sample_shape: None,
        }
    }

    #[test]
    fn label_by_name_with_text_classes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.csv");
        std::fs::write(&p, "lettr,a,b\nT,1,2\nA,3,4\nT,5,6\n").unwrap();
        let (ds, names) = read_csv(&p, &opts(LabelColumn::Name("lettr".into()))).unwrap();
        assert_eq!(names.unwrap(), vec!["A", "T"]);
        assert_eq!(ds.labels, vec![1, 0, 1]);
        assert_eq!(ds.features.row(1).to_vec(), vec![3.0, 4.0]);
    }

    #[test]
    fn label_by_position_without_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(&p, "0,1,2\n3,4,0\n5,6,1\n").unwrap();
        let (ds, names) = read_csv(&p, &opts(LabelColumn::Index(-1))).unwrap();
        assert!(names.is_none());
        assert_eq!(ds.labels, vec![2, 0, 1]);
        assert_eq!(ds.num_classes, 3);
    }

    #[test]
    fn malformed_lines_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(&p, "0,1,2\n3,4\n").unwrap();
        let err = read_csv(&p, &opts(LabelColumn::Index(-1)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("d.csv"), "{err}");
        std::fs::write(&p, "0,1,2\n3,x,1\n").unwrap();
        let err = read_csv(&p, &opts(LabelColumn::Index(-1)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"x\" is not a finite number"), "{err}");
        std::fs::write(&p, "0,1,0\n3,nan,1\n").unwrap();
        let err = read_csv(&p, &opts(LabelColumn::Index(-1)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2, column 2") && err.contains("\"nan\""),
            "{err}"
        );
    }

    #[test]
    fn quoted_fields_and_a_text_label_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(
            &p,
            "\"x, first\",x2,kind\r\n\"1.5\",2,\"cat, small\"\r\n3,4,dog\r\n\r\n5,6,\"cat, small\"\r\n",
        )
        .unwrap();
        let (ds, names) = read_csv(&p, &opts(LabelColumn::Name("kind".into()))).unwrap();
        assert_eq!(
            names.unwrap(),
            vec!["cat, small".to_string(), "dog".to_string()]
        );
        assert_eq!(ds.labels, vec![0, 1, 0]);
        assert_eq!(ds.features.row(0).to_vec(), vec![1.5, 2.0]);
        std::fs::write(&p, "1,2,0\n3,\"4,1\n").unwrap();
        let err = read_csv(&p, &opts(LabelColumn::Index(-1)))
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n') && err.contains("d.csv"), "{err}");
    }

    #[test]
    fn labels_must_be_class_indices() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        for bad in ["nan", "3.5", "1e9", "inf", "-1"] {
            std::fs::write(&p, format!("0,1,0\n3,4,{bad}\n")).unwrap();
            let err = read_csv(&p, &opts(LabelColumn::Index(-1)))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("example 1") && err.contains("is not a class index"),
                "{bad}: {err}"
            );
        }
        // A stray large label would make empty classes.
        std::fs::write(&p, "0,1,0\n3,4,1\n5,6,200\n").unwrap();
        let err = read_csv(&p, &opts(LabelColumn::Index(-1)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("up to 200 (example 2)") && err.contains("class 2 has no example"),
            "{err}"
        );
        // Declared, empty classes are allowed.
        let mut o = opts(LabelColumn::Index(-1));
        o.num_classes = Some(201);
        assert_eq!(read_csv(&p, &o).unwrap().0.num_classes, 201);
    }
}
