//! `--set section.field=value`: a setting changed for one command without editing the file.
//! Applied to the manifest's text (its formatting and line numbers kept, a new key added to
//! its table), which is then read and checked like any manifest: a wrong field or value is
//! refused with the same line as in the file.

use toml_edit::{DocumentMut, Item, TableLike, Value};

/// One `--set`: a dotted path (`student.epochs`, `output`, `data.normalise.scale`,
/// `prune.0.keep` for the first `[[prune]]`) and a TOML value; a bare word is a string.
#[derive(Debug, Clone)]
pub struct Override {
    path: Vec<String>,
    value: Value,
    text: String,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (path, value) = text
            .split_once('=')
            .ok_or_else(|| format!("--set {text:?}: write section.field=value"))?;
        let path: Vec<String> = path
            .trim()
            .split('.')
            .map(|p| p.trim().to_string())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("--set {text:?}: a name in the path is empty"));
        }
        let value = value.trim();
        let value = value
            .parse::<Value>()
            .unwrap_or_else(|_| Value::from(value));
        Ok(Self {
            path,
            value,
            text: text.to_string(),
        })
    }
}

/// `source` with every override applied in order; `source` itself when it does not parse
/// (the reader then says where).
pub fn apply(source: &str, overrides: &[Override]) -> Result<String, String> {
    if overrides.is_empty() {
        return Ok(source.to_string());
    }
    let Ok(mut doc) = source.parse::<DocumentMut>() else {
        return Ok(source.to_string());
    };
    for o in overrides {
        set_in(doc.as_table_mut(), false, &o.path, o)?;
    }
    Ok(doc.to_string())
}

/// Sets `path` under `table`; `inline`: the table is an inline one, whose new sub-tables must
/// be inline too (a standard table inside it would be dropped when written).
fn set_in(
    table: &mut dyn TableLike,
    inline: bool,
    path: &[String],
    o: &Override,
) -> Result<(), String> {
    let (head, rest) = path.split_first().expect("a path has a name");
    if rest.is_empty() {
        table.insert(head, Item::Value(o.value.clone()));
        return Ok(());
    }
    let not_a_table = || format!("--set {}: {head} is a value, not a table", o.text);
    let empty = if inline {
        Item::Value(Value::InlineTable(Default::default()))
    } else {
        toml_edit::table()
    };
    match table.entry(head).or_insert(empty) {
        Item::Table(t) => set_in(t, false, rest, o),
        Item::Value(Value::InlineTable(t)) => set_in(t, true, rest, o),
        Item::ArrayOfTables(entries) => {
            let (index, rest) = rest.split_first().expect("checked above");
            let count = entries.len();
            let entry = index
                .parse::<usize>()
                .ok()
                .and_then(|i| entries.get_mut(i))
                .ok_or_else(|| {
                    format!(
                        "--set {}: [[{head}]] has {count} entries; name one by its number from 0 ({head}.0.field)",
                        o.text
                    )
                })?;
            if rest.is_empty() {
                return Err(format!(
                    "--set {}: name a field of [[{head}]] {index}",
                    o.text
                ));
            }
            set_in(entry, false, rest, o)
        }
        _ => Err(not_a_table()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(source: &str, sets: &[&str]) -> Result<String, String> {
        let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
        apply(source, &overrides)
    }

    #[test]
    fn values_replace_in_place_and_new_keys_join_their_table() {
        let source = "output = \"out\"\n\n[student]\nhidden = [8]\nepochs = 2 # two\n\n[[prune]]\nmethod = \"random\"\nkeep = [0.5]\n\n[[prune]]\nmethod = \"el2n\"\nkeep = [0.5]\n";
        let edited = set(
            source,
            &[
                "student.epochs=5",
                "output=runs/x",
                "student.lr = 0.1",
                "prune.1.keep=[0.1, 0.3]",
            ],
        )
        .unwrap();
        let table: toml::Table = toml::from_str(&edited).unwrap();
        assert_eq!(table["student"]["epochs"].as_integer(), Some(5));
        assert_eq!(table["student"]["lr"].as_float(), Some(0.1));
        assert_eq!(table["output"].as_str(), Some("runs/x"));
        assert_eq!(table["prune"][1]["keep"].as_array().unwrap().len(), 2);
        assert_eq!(table["prune"][0]["keep"].as_array().unwrap().len(), 1);
        // The lines before an edit stay where they were.
        assert_eq!(edited.lines().nth(3), Some("hidden = [8]"));
        // A new key under an inline table stays inline (a standard table there is lost).
        let edited = set(
            "[student]\naugment = { flip = true }\n",
            &["student.augment.crop.pad=4"],
        )
        .unwrap();
        let table: toml::Table = toml::from_str(&edited).unwrap();
        assert_eq!(
            table["student"]["augment"]["crop"]["pad"].as_integer(),
            Some(4),
            "{edited}"
        );
    }

    #[test]
    fn a_bad_path_is_one_line_naming_it() {
        let source = "output = \"out\"\n[[prune]]\nmethod = \"random\"\n";
        let err = set(source, &["prune.3.keep=[0.1]"]).unwrap_err();
        assert!(err.contains("has 1 entries"), "{err}");
        let err = set(source, &["output.x=1"]).unwrap_err();
        assert!(err.contains("output is a value"), "{err}");
        assert!("student.epochs".parse::<Override>().is_err());
        assert!(".epochs=1".parse::<Override>().is_err());
    }
}
