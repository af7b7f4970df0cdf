//! The layer spec language of `[student] layers`: one string per layer.
//!
//! | spec | layer |
//! |---|---|
//! | `dense N` | fully connected, N outputs (flattens image input first) |
//! | `relu` | ReLU |
//! | `conv O [kK] [sS] [pP] [nobias]` | 2-D convolution, O channels, kernel K (3), stride S (1), padding P (K/2) |
//! | `maxpool K [sS]` / `avgpool K [sS]` | pooling, window K, stride S (K) |
//! | `gap` | global average pooling to `[C]` |
//! | `bn` | batch normalisation over channels |
//! | `dropout P` | inverted dropout with drop probability P |
//! | `flatten` | `[C, H, W]` → `[C·H·W]` |
//! | `res O [sS]` | ResNet basic block: conv3-bn-relu-conv3-bn plus shortcut (1×1 conv + bn when shape changes), then ReLU |
//!
//! The network's last layer, `dense num_classes`, is added by kdprune.

use serde::Serialize;

/// One declared layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "layer", rename_all = "lowercase")]
pub enum LayerSpec {
    Dense {
        units: usize,
    },
    Relu,
    Conv {
        out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    },
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    AvgPool {
        kernel: usize,
        stride: usize,
    },
    Gap,
    Bn,
    Dropout {
        p: f32,
    },
    Flatten,
    Res {
        out: usize,
        stride: usize,
    },
}

fn number<T: std::str::FromStr>(token: &str, what: &str) -> Result<T, String> {
    token
        .parse()
        .map_err(|_| format!("{what} {token:?} is not a valid number"))
}

/// The spec as `[student] layers` writes it, every option spelled out (`parse_layer` reads it
/// back to the same spec).
impl std::fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            LayerSpec::Dense { units } => write!(f, "dense {units}"),
            LayerSpec::Relu => f.write_str("relu"),
            LayerSpec::Conv {
                out,
                kernel,
                stride,
                padding,
                bias,
            } => {
                write!(f, "conv {out} k{kernel} s{stride} p{padding}")?;
                if !bias {
                    f.write_str(" nobias")?;
                }
                Ok(())
            }
            LayerSpec::MaxPool { kernel, stride } => write!(f, "maxpool {kernel} s{stride}"),
            LayerSpec::AvgPool { kernel, stride } => write!(f, "avgpool {kernel} s{stride}"),
            LayerSpec::Gap => f.write_str("gap"),
            LayerSpec::Bn => f.write_str("bn"),
            LayerSpec::Dropout { p } => write!(f, "dropout {p}"),
            LayerSpec::Flatten => f.write_str("flatten"),
            LayerSpec::Res { out, stride } => write!(f, "res {out} s{stride}"),
        }
    }
}

/// Parses one spec such as `"conv 32 k3 s1 p1"`.
pub fn parse_layer(text: &str) -> Result<LayerSpec, String> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let (&kind, rest) = tokens
        .split_first()
        .ok_or_else(|| "empty layer spec".to_string())?;
    let positional = |i: usize, what: &str| -> Result<&str, String> {
        rest.get(i)
            .copied()
            .ok_or_else(|| format!("{kind:?} needs {what}, e.g. {}", example(kind)))
    };
    let option = |prefix: char| -> Result<Option<usize>, String> {
        rest.iter()
            .skip(1)
            .find(|t| {
                t.starts_with(prefix) && t[1..].chars().all(|c| c.is_ascii_digit()) && t.len() > 1
            })
            .map(|t| number(&t[1..], &format!("{kind} {prefix}")))
            .transpose()
    };
    let check_options = |allowed: &[&str]| -> Result<(), String> {
        for t in rest.iter().skip(1) {
            let ok = allowed.iter().any(|a| {
                if a.len() == 1 {
                    t.starts_with(a) && t.len() > 1 && t[1..].chars().all(|c| c.is_ascii_digit())
                } else {
                    t == a
                }
            });
            if !ok {
                return Err(format!(
                    "unknown option {t:?} for {kind:?}; e.g. {}",
                    example(kind)
                ));
            }
        }
        Ok(())
    };
    let positive = |v: usize, what: &str| -> Result<usize, String> {
        if v == 0 {
            Err(format!("{kind} {what} must be positive"))
        } else {
            Ok(v)
        }
    };
    let spec = match kind {
        "dense" => {
            check_options(&[])?;
            LayerSpec::Dense { units: positive(number(positional(0, "a width")?, "width")?, "width")? }
        }
        "conv" => {
            check_options(&["k", "s", "p", "nobias"])?;
            let out = positive(number(positional(0, "a channel count")?, "channels")?, "channels")?;
            let kernel = positive(option('k')?.unwrap_or(3), "kernel")?;
            LayerSpec::Conv {
                out,
                kernel,
                stride: positive(option('s')?.unwrap_or(1), "stride")?,
                padding: option('p')?.unwrap_or(kernel / 2),
                bias: !rest.contains(&"nobias"),
            }
        }
        "maxpool" | "avgpool" => {
            check_options(&["s"])?;
            let kernel = positive(number(positional(0, "a window size")?, "window")?, "window")?;
            let stride = positive(option('s')?.unwrap_or(kernel), "stride")?;
            if kind == "maxpool" {
                LayerSpec::MaxPool { kernel, stride }
            } else {
                LayerSpec::AvgPool { kernel, stride }
            }
        }
        "res" => {
            check_options(&["s"])?;
            LayerSpec::Res {
                out: positive(number(positional(0, "a channel count")?, "channels")?, "channels")?,
                stride: positive(option('s')?.unwrap_or(1), "stride")?,
            }
        }
        "dropout" => {
            check_options(&[])?;
            let p: f32 = number(positional(0, "a probability")?, "probability")?;
            if !(0.0..1.0).contains(&p) {
                return Err(format!("dropout probability {p} must be in [0, 1)"));
            }
            LayerSpec::Dropout { p }
        }
        "relu" | "gap" | "bn" | "flatten" => {
            if !rest.is_empty() {
                return Err(format!("{kind:?} takes no arguments"));
            }
            match kind {
                "relu" => LayerSpec::Relu,
                "gap" => LayerSpec::Gap,
                "bn" => LayerSpec::Bn,
                _ => LayerSpec::Flatten,
            }
        }
        other => {
            return Err(format!(
                "unknown layer {other:?}; known: dense, relu, conv, maxpool, avgpool, gap, bn, dropout, flatten, res"
            ))
        }
    };
    Ok(spec)
}

fn example(kind: &str) -> &'static str {
    match kind {
        "dense" => "\"dense 128\"",
        "conv" => "\"conv 32 k3 s1 p1\"",
        "maxpool" => "\"maxpool 2\"",
        "avgpool" => "\"avgpool 2 s2\"",
        "res" => "\"res 64 s2\"",
        "dropout" => "\"dropout 0.3\"",
        _ => "\"relu\"",
    }
}

/// The layers of an MLP with `hidden` widths: `dense h, relu` for each.
pub fn mlp(hidden: &[usize]) -> Vec<LayerSpec> {
    hidden
        .iter()
        .flat_map(|&units| [LayerSpec::Dense { units }, LayerSpec::Relu])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_defaults() {
        assert_eq!(
            parse_layer("conv 32").unwrap(),
            LayerSpec::Conv {
                out: 32,
                kernel: 3,
                stride: 1,
                padding: 1,
                bias: true
            }
        );
        assert_eq!(
            parse_layer("conv 8 k5 s2 p0 nobias").unwrap(),
            LayerSpec::Conv {
                out: 8,
                kernel: 5,
                stride: 2,
                padding: 0,
                bias: false
            }
        );
        assert_eq!(
            parse_layer("maxpool 2").unwrap(),
            LayerSpec::MaxPool {
                kernel: 2,
                stride: 2
            }
        );
        assert_eq!(
            parse_layer("res 64 s2").unwrap(),
            LayerSpec::Res { out: 64, stride: 2 }
        );
        assert!(parse_layer("conv")
            .unwrap_err()
            .contains("needs a channel count"));
        assert!(parse_layer("conv 3 q1")
            .unwrap_err()
            .contains("unknown option"));
        assert!(parse_layer("lstm 3").unwrap_err().contains("unknown layer"));
        assert!(parse_layer("dropout 1.5").is_err());
        for text in [
            "dense 8",
            "relu",
            "conv 8 k5 s2 p0 nobias",
            "conv 3",
            "maxpool 2",
            "avgpool 3 s1",
            "gap",
            "bn",
            "dropout 0.3",
            "flatten",
            "res 64 s2",
        ] {
            let spec = parse_layer(text).unwrap();
            assert_eq!(parse_layer(&spec.to_string()).unwrap(), spec, "{text}");
        }
    }
}
