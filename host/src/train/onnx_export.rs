//! Writing a trained student as an ONNX model (opset 13), so it can be deployed or serve as
//! the next teacher. The ONNX messages it needs (Model, Graph, Node, Attribute, Tensor,
//! ValueInfo, Type, Shape, OperatorSetId) are declared here for `prost` with their field
//! numbers from onnx/onnx.proto; `prost` does the encoding.

use ndarray::ArrayD;
use prost::Message;

/// onnx.proto's `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

/// `AttributeProto.AttributeType`: FLOAT = 1, INT = 2, INTS = 7.
#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(float, optional, tag = "2")]
    f: Option<f32>,
    #[prost(int64, optional, tag = "3")]
    i: Option<i64>,
    #[prost(int64, repeated, packed = "false", tag = "8")]
    ints: Vec<i64>,
    #[prost(int32, tag = "20")]
    r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, packed = "false", tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(oneof = "DimensionValue", tags = "1, 2")]
    value: Option<DimensionValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum DimensionValue {
    #[prost(int64, tag = "1")]
    DimValue(i64),
    #[prost(string, tag = "2")]
    DimParam(String),
}

/// A node attribute.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// Collects nodes and initializers in order.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    /// Adds a float tensor initializer; returns its name.
    pub fn initializer(&mut self, name: &str, value: &ArrayD<f32>) -> String {
        self.initializers.push(TensorProto {
            dims: value.shape().iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.to_string(),
            raw_data: value.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    /// Adds a node named `name` with one output, also called `name`; returns it.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        name: &str,
        attrs: &[(&str, Attr)],
    ) -> String {
        let attribute = attrs
            .iter()
            .map(|(attr_name, value)| {
                let mut a = AttributeProto {
                    name: attr_name.to_string(),
                    ..Default::default()
                };
                match value {
                    Attr::Int(v) => {
                        a.i = Some(*v);
                        a.r#type = 2;
                    }
                    Attr::Ints(vs) => {
                        a.ints = vs.clone();
                        a.r#type = 7;
                    }
                    Attr::Float(v) => {
                        a.f = Some(*v);
                        a.r#type = 1;
                    }
                }
                a
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|i| i.to_string()).collect(),
            output: vec![name.to_string()],
            name: name.to_string(),
            op_type: op.to_string(),
            attribute,
        });
        name.to_string()
    }

    /// The serialised model: input `input` `[N, ...input_shape]` (N dynamic), output `output`
    /// `[N, classes]`.
    pub fn finish(
        self,
        input: &str,
        input_shape: &[usize],
        output: &str,
        classes: usize,
    ) -> Vec<u8> {
        let value_info = |name: &str, dims: &[Option<usize>]| ValueInfoProto {
            name: name.to_string(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: FLOAT,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|d| Dimension {
                                value: Some(match d {
                                    Some(v) => DimensionValue::DimValue(*v as i64),
                                    None => DimensionValue::DimParam("N".into()),
                                }),
                            })
                            .collect(),
                    }),
                }),
            }),
        };
        let in_dims: Vec<Option<usize>> = std::iter::once(None)
            .chain(input_shape.iter().map(|&d| Some(d)))
            .collect();
        ModelProto {
            ir_version: 8, // ONNX 1.10+.
            producer_name: "kdprune".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: "kdprune-student".into(),
                initializer: self.initializers,
                input: vec![value_info(input, &in_dims)],
                output: vec![value_info(output, &[None, Some(classes)])],
            }),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
        }
        .encode_to_vec()
    }
}
