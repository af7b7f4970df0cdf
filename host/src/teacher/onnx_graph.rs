//! Reading and editing an ONNX model's protobuf just enough to serve an intermediate tensor:
//! list the tensors the graph's nodes produce, and add one of them to the graph's outputs
//! (ONNX Runtime only returns graph outputs). Works on the wire format, so it keeps every
//! other byte of the model as it was.
//!
//! Field numbers (onnx.proto3): `ModelProto.graph = 7`, `GraphProto.node = 1`,
//! `GraphProto.output = 12`, `NodeProto.output = 2`, `ValueInfoProto.name = 1`.

use std::ops::Range;

const MODEL_GRAPH: u32 = 7;
const GRAPH_NODE: u32 = 1;
const GRAPH_OUTPUT: u32 = 12;
const NODE_OUTPUT: u32 = 2;
const VALUE_INFO_NAME: u32 = 1;

/// One field of a message: its number, and for length-delimited fields the payload's range;
/// `whole` spans tag and payload.
struct Field {
    number: u32,
    payload: Option<Range<usize>>,
    whole: Range<usize>,
}

fn varint(bytes: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

fn fields(bytes: &[u8]) -> Result<Vec<Field>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < bytes.len() {
        let start = pos;
        let tag = varint(bytes, &mut pos)?;
        let number = (tag >> 3) as u32;
        let payload = match tag & 7 {
            0 => {
                varint(bytes, &mut pos)?;
                None
            }
            1 => {
                pos += 8;
                None
            }
            5 => {
                pos += 4;
                None
            }
            2 => {
                let len = varint(bytes, &mut pos)? as usize;
                let range = pos..pos.checked_add(len).ok_or("length overflow")?;
                pos = range.end;
                Some(range)
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        if pos > bytes.len() {
            return Err("truncated field".into());
        }
        out.push(Field {
            number,
            payload,
            whole: start..pos,
        });
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    put_varint(out, ((number as u64) << 3) | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn strings(bytes: &[u8], number: u32) -> Result<Vec<String>, String> {
    Ok(fields(bytes)?
        .into_iter()
        .filter(|f| f.number == number)
        .filter_map(|f| f.payload)
        .map(|r| String::from_utf8_lossy(&bytes[r]).into_owned())
        .collect())
}

fn graph_range(model: &[u8]) -> Result<Field, String> {
    fields(model)?
        .into_iter()
        .find(|f| f.number == MODEL_GRAPH && f.payload.is_some())
        .ok_or_else(|| "no graph in the model".to_string())
}

/// The tensors the graph's nodes produce, in node order, and the graph's outputs.
pub fn tensor_names(model: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    let graph_field = graph_range(model)?;
    let graph = &model[graph_field.payload.expect("checked")];
    let mut produced = Vec::new();
    let mut outputs = Vec::new();
    for f in fields(graph)? {
        let Some(r) = f.payload else { continue };
        match f.number {
            GRAPH_NODE => produced.extend(strings(&graph[r], NODE_OUTPUT)?),
            GRAPH_OUTPUT => outputs.extend(strings(&graph[r], VALUE_INFO_NAME)?),
            _ => {}
        }
    }
    Ok((produced, outputs))
}

/// The model with `tensor` among the graph's outputs (unchanged when it already is one).
/// An error lists the tensors the model has when `tensor` is not one of them.
pub fn with_output(model: &[u8], tensor: &str) -> Result<Vec<u8>, String> {
    let (produced, outputs) = tensor_names(model)?;
    if outputs.iter().any(|o| o == tensor) {
        return Ok(model.to_vec());
    }
    if !produced.iter().any(|p| p == tensor) {
        let shown: Vec<&str> = produced.iter().map(String::as_str).take(40).collect();
        return Err(format!(
            "has no tensor named {tensor:?}; the tensors its nodes produce are: {}{}",
            shown.join(", "),
            if produced.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ));
    }
    let graph_field = graph_range(model)?;
    let payload = graph_field.payload.clone().expect("checked");
    let mut value_info = Vec::new();
    put_bytes(&mut value_info, VALUE_INFO_NAME, tensor.as_bytes());
    let mut graph = model[payload].to_vec();
    put_bytes(&mut graph, GRAPH_OUTPUT, &value_info);
    let mut out = Vec::with_capacity(model.len() + value_info.len() + 16);
    out.extend_from_slice(&model[..graph_field.whole.start]);
    put_bytes(&mut out, MODEL_GRAPH, &graph);
    out.extend_from_slice(&model[graph_field.whole.end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model: ir_version = 7 (field 1), graph { node { output "h" } output { name "y" } }.
    fn model() -> Vec<u8> {
        let mut node = Vec::new();
        put_bytes(&mut node, NODE_OUTPUT, b"h");
        let mut out_info = Vec::new();
        put_bytes(&mut out_info, VALUE_INFO_NAME, b"y");
        let mut graph = Vec::new();
        put_bytes(&mut graph, GRAPH_NODE, &node);
        put_bytes(&mut graph, GRAPH_OUTPUT, &out_info);
        let mut m = vec![0x08, 7];
        put_bytes(&mut m, MODEL_GRAPH, &graph);
        m.extend([0x40, 11]); // opset-like trailing varint field 8
        m
    }

    #[test]
    fn adds_an_intermediate_tensor_as_an_output_and_keeps_the_rest() {
        let m = model();
        assert_eq!(
            tensor_names(&m).unwrap(),
            (vec!["h".into()], vec!["y".into()])
        );
        let edited = with_output(&m, "h").unwrap();
        assert_eq!(
            tensor_names(&edited).unwrap(),
            (vec!["h".into()], vec!["y".into(), "h".into()])
        );
        assert_eq!(&edited[..2], &[0x08, 7]);
        assert_eq!(&edited[edited.len() - 2..], &[0x40, 11]);
        assert_eq!(with_output(&m, "y").unwrap(), m);
        let err = with_output(&m, "z").unwrap_err();
        assert!(err.contains("\"z\"") && err.contains("h"), "{err}");
    }
}
