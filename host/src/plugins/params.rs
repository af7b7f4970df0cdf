//! Checking a manifest's parameter table against a plugin's declared parameters.

use std::collections::BTreeMap;

use kdprune_plugin_api::{Param, ParamKind, ParamSpec, ParamValue};

/// Every declared parameter, in declaration order, with the manifest's value (converted to
/// the declared kind) or the default. Unknown names and wrong kinds are errors that name the
/// parameter, the plugin and what is accepted.
pub fn check_params(
    plugin: &str,
    specs: &[ParamSpec],
    given: &BTreeMap<String, toml::Value>,
) -> Result<Vec<Param>, String> {
    if let Some(unknown) = given
        .keys()
        .find(|k| !specs.iter().any(|s| s.name.as_str() == k.as_str()))
    {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "plugin {plugin:?} has no parameter {unknown:?}; it takes {}{}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            },
            crate::suggest::did_you_mean(unknown, known.iter().copied())
        ));
    }
    specs
        .iter()
        .map(|spec| {
            let default = spec.default_value().ok_or_else(|| {
                format!(
                    "parameter {:?} of plugin {plugin:?} has a default of a kind this host does not know; upgrade kdprune",
                    spec.name.as_str()
                )
            })?;
            let value = match given.get(spec.name.as_str()) {
                None => default.clone(),
                Some(v) => convert(v, default.kind()).ok_or_else(|| {
                    format!(
                        "parameter {:?} of plugin {plugin:?} must be {} (got {v})",
                        spec.name.as_str(),
                        default.kind().as_str()
                    )
                })?,
            };
            Ok(Param {
                name: spec.name.clone(),
                value: value.into_ne(),
            })
        })
        .collect()
}

fn convert(value: &toml::Value, kind: ParamKind) -> Option<ParamValue> {
    match (kind, value) {
        (ParamKind::Int, toml::Value::Integer(i)) => Some(ParamValue::Int(*i)),
        (ParamKind::Float, toml::Value::Float(f)) => Some(ParamValue::Float(*f)),
        (ParamKind::Float, toml::Value::Integer(i)) => Some(ParamValue::Float(*i as f64)),
        (ParamKind::Bool, toml::Value::Boolean(b)) => Some(ParamValue::Bool(*b)),
        (ParamKind::Text, toml::Value::String(s)) => Some(ParamValue::Text(s.as_str().into())),
        (ParamKind::IntList, toml::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_integer())
            .collect::<Option<Vec<_>>>()
            .map(|v| ParamValue::IntList(v.into())),
        (ParamKind::FloatList, toml::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
            .collect::<Option<Vec<_>>>()
            .map(|v| ParamValue::FloatList(v.into())),
        (ParamKind::TextList, toml::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(Into::into))
            .collect::<Option<Vec<_>>>()
            .map(|v| ParamValue::TextList(v.into())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, default: ParamValue) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            default: default.into_ne(),
            description: "".into(),
        }
    }

    #[test]
    fn fills_defaults_converts_and_rejects() {
        let specs = vec![
            spec("a", ParamValue::Int(1)),
            spec("b", ParamValue::Float(0.5)),
        ];
        let mut given = BTreeMap::new();
        given.insert("b".to_string(), toml::Value::Integer(2));
        let params = check_params("p", &specs, &given).unwrap();
        assert_eq!(params[0].value.as_enum(), Ok(&ParamValue::Int(1)));
        assert_eq!(params[1].value.as_enum(), Ok(&ParamValue::Float(2.0)));

        given.insert("c".to_string(), toml::Value::Integer(2));
        let err = check_params("p", &specs, &given).unwrap_err();
        assert!(
            err.contains("no parameter \"c\"") && err.contains("a, b"),
            "{err}"
        );

        let mut given = BTreeMap::new();
        given.insert("a".to_string(), toml::Value::String("x".into()));
        let err = check_params("p", &specs, &given).unwrap_err();
        assert!(err.contains("must be int"), "{err}");
    }

    #[test]
    fn lists_convert_element_by_element() {
        let specs = vec![
            spec("epochs", ParamValue::IntList(vec![1].into())),
            spec("weights", ParamValue::FloatList(vec![0.5].into())),
        ];
        let mut given = BTreeMap::new();
        given.insert(
            "weights".to_string(),
            toml::Value::Array(vec![toml::Value::Integer(1), toml::Value::Float(0.25)]),
        );
        let params = check_params("p", &specs, &given).unwrap();
        assert_eq!(
            params[1].value.as_enum(),
            Ok(&ParamValue::FloatList(vec![1.0, 0.25].into()))
        );
        given.insert(
            "epochs".to_string(),
            toml::Value::Array(vec![
                toml::Value::Integer(1),
                toml::Value::String("x".into()),
            ]),
        );
        let err = check_params("p", &specs, &given).unwrap_err();
        assert!(err.contains("must be list of int"), "{err}");
    }
}
