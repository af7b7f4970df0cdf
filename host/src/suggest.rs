//! "Did you mean": the known name closest to a misspelled one, for errors about names (plugin
//! methods, manifest fields, choices, policies).

/// Levenshtein distance between `a` and `b` (by characters).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + (ca != cb) as usize).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The candidate closest to `word`, when it is close enough to be a misspelling (at most a
/// third of the word's length away, and at least one edit allowed).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|&(d, _)| d > 0 && d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `"; did you mean \"x\"?"`, or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("; did you mean {c:?}?"))
        .unwrap_or_default()
}

/// Adds a suggestion to a serde "unknown field `x`, expected one of `a`, `b`" or "unknown
/// variant `x`, expected `a` or `b`" message; a variant's message is prefixed with `key`, the
/// field it was written in, when known.
pub fn unknown_field_hint(message: &str, key: Option<&str>) -> String {
    if let Some(rest) = message.split("unknown variant `").nth(1) {
        let Some((word, tail)) = rest.split_once('`') else {
            return message.to_string();
        };
        let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        let prefix = key.map(|k| format!("{k} = {word:?}: ")).unwrap_or_default();
        return format!("{prefix}{message}{}", did_you_mean(word, expected));
    }
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return message.to_string();
    };
    let Some((field, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    format!("{message}{}", did_you_mean(field, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(closest("randon", ["random", "el2n"]), Some("random"));
        assert_eq!(closest("hardst", ["hardest", "easiest"]), Some("hardest"));
        assert_eq!(closest("xyz", ["random", "el2n"]), None);
        assert_eq!(
            unknown_field_hint(
                "unknown field `epoch`, expected one of `hidden`, `epochs`, `lr`",
                None
            ),
            "unknown field `epoch`, expected one of `hidden`, `epochs`, `lr`; did you mean \"epochs\"?"
        );
        assert_eq!(
            unknown_field_hint("unknown variant `cudaa`, expected `cpu` or `cuda`", Some("provider")),
            "provider = \"cudaa\": unknown variant `cudaa`, expected `cpu` or `cuda`; did you mean \"cuda\"?"
        );
    }
}
