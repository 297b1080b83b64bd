//! A generic, read-only view of a parse tree, built straight from its `Serialize` impl.
//!
//! The analyser walks libpg_query's tree generically (every field of every node) so that no
//! nested node is missed. `serde_json::Value` did that job but allocated a `String` for every
//! field name and a B-tree per struct; that conversion was a third of the time of analysing
//! a short statement. Field and variant names are `&'static str` in serde, so this tree keeps
//! them as such, in declaration order, in a plain vector.

use serde::ser::{self, Serialize};

/// A node of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None` / unit.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer (enums are integers in the protobuf types).
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    String(String),
    /// A list.
    Array(Vec<Value>),
    /// A struct, or an enum variant as `{variant: value}`.
    Object(Map),
}

/// The fields of a struct, in declaration order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map(Vec<(&'static str, Value)>);

impl Map {
    /// The field named `k`.
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    /// Whether there is a field named `k`.
    pub fn contains_key(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (name, value) pairs in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.0.iter().map(|(k, v)| (*k, v))
    }

    /// The values in declaration order.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.0.iter().map(|(_, v)| v)
    }

    /// A map from pairs.
    pub fn from_pairs(pairs: Vec<(&'static str, Value)>) -> Self {
        Map(pairs)
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'static str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (&'static str, Value)>,
        fn(&'a (&'static str, Value)) -> (&'static str, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (*k, v))
    }
}

impl Value {
    /// The field `k` of an object.
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.as_object()?.get(k)
    }

    /// The map of an object.
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }
    /// The items of an array.
    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// An integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// Why a value could not be turned into a tree.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// The tree of `v`.
pub fn to_tree<T: Serialize + ?Sized>(v: &T) -> Result<Value, Error> {
    v.serialize(Builder)
}

struct Builder;

/// Collects a sequence.
pub struct Seq(Vec<Value>);
/// Collects a struct's fields.
pub struct Fields(Vec<(&'static str, Value)>);
/// Collects a struct or tuple variant: `{variant: …}`.
pub struct Variant(&'static str, Fields, Vec<Value>);

fn int<T: TryInto<i64>>(v: T) -> Result<Value, Error> {
    v.try_into()
        .map(Value::Int)
        .map_err(|_| Error("integer out of range".into()))
}

impl ser::Serializer for Builder {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = Variant;
    type SerializeMap = ser::Impossible<Value, Error>;
    type SerializeStruct = Fields;
    type SerializeStructVariant = Variant;

    fn serialize_bool(self, v: bool) -> Result<Value, Error> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, Error> {
        int(v)
    }
    fn serialize_i16(self, v: i16) -> Result<Value, Error> {
        int(v)
    }
    fn serialize_i32(self, v: i32) -> Result<Value, Error> {
        int(v)
    }
    fn serialize_i64(self, v: i64) -> Result<Value, Error> {
        int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Value, Error> {
        int(v)
    }
    fn serialize_u16(self, v: u16) -> Result<Value, Error> {
        int(v)
    }
    fn serialize_u32(self, v: u32) -> Result<Value, Error> {
        int(v)
    }
    fn serialize_u64(self, v: u64) -> Result<Value, Error> {
        int(v)
    }
    fn serialize_f32(self, v: f32) -> Result<Value, Error> {
        Ok(Value::Float(f64::from(v)))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, Error> {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, Error> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, Error> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Error> {
        Ok(Value::Array(
            v.iter().map(|b| Value::Int(i64::from(*b))).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
    ) -> Result<Value, Error> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Value, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, Error> {
        Ok(Value::Object(Map(vec![(variant, v.serialize(Builder)?)])))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, Error> {
        Ok(Seq(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, Error> {
        Ok(Seq(Vec::with_capacity(len)))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq, Error> {
        Ok(Seq(Vec::with_capacity(len)))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant, Error> {
        Ok(Variant(
            variant,
            Fields(Vec::new()),
            Vec::with_capacity(len),
        ))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        // Parse-tree nodes have no map fields; refusing keeps keys `&'static str`.
        Err(Error("unexpected map in the parse tree".into()))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Fields, Error> {
        Ok(Fields(Vec::with_capacity(len)))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant, Error> {
        Ok(Variant(
            variant,
            Fields(Vec::with_capacity(len)),
            Vec::new(),
        ))
    }
}

impl ser::SerializeSeq for Seq {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.0.push(v.serialize(Builder)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Array(self.0))
    }
}

impl ser::SerializeTuple for Seq {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Seq {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeStruct for Fields {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.0.push((key, v.serialize(Builder)?));
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Object(Map(self.0)))
    }
}

impl ser::SerializeTupleVariant for Variant {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.2.push(v.serialize(Builder)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Object(Map(vec![(self.0, Value::Array(self.2))])))
    }
}

impl ser::SerializeStructVariant for Variant {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.1 .0.push((key, v.serialize(Builder)?));
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Object(Map(vec![(
            self.0,
            Value::Object(Map(self.1 .0)),
        )])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Inner {
        name: String,
        n: Option<i32>,
    }
    #[derive(serde::Serialize)]
    enum Node {
        Leaf(Inner),
        Empty,
    }
    #[derive(serde::Serialize)]
    struct Outer {
        nodes: Vec<Node>,
        flag: bool,
        cost: f64,
    }

    #[test]
    fn same_shape_as_json() {
        let v = Outer {
            nodes: vec![
                Node::Leaf(Inner {
                    name: "t".into(),
                    n: None,
                }),
                Node::Empty,
            ],
            flag: true,
            cost: 1.5,
        };
        let t = to_tree(&v).unwrap();
        let o = t.as_object().unwrap();
        assert_eq!(
            o.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["nodes", "flag", "cost"]
        );
        let nodes = o.get("nodes").unwrap().as_array().unwrap();
        let leaf = nodes[0]
            .as_object()
            .unwrap()
            .get("Leaf")
            .unwrap()
            .as_object()
            .unwrap();
        assert_eq!(leaf.get("name").unwrap().as_str(), Some("t"));
        assert_eq!(leaf.get("n"), Some(&Value::Null));
        assert_eq!(nodes[1].as_str(), Some("Empty"));
        assert_eq!(o.get("flag").unwrap().as_bool(), Some(true));
        assert!(o.get("missing").is_none());
    }
}
