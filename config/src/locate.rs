//! A second, schema-free pass over the YAML that records where every key and value is, so that
//! errors found by serde or by semantic validation can name both a field path and a line/column.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Location, NonFiniteFloatPolicy, Spanned};

/// A 1-based (line, column) position.
pub(crate) type Pos = (usize, usize);

/// One node of the document with its field path.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Field path, e.g. `backends[0].devices[1].name`.
    pub path: String,
    /// Position of the mapping key, for mapping entries.
    pub key: Option<Pos>,
    /// Position of the value.
    pub value: Option<Pos>,
    /// `scalar`, `sequence` or `mapping`.
    pub kind: &'static str,
}

/// Every key and value of a document, in document order.
#[derive(Debug, Default)]
pub(crate) struct LocationIndex {
    entries: Vec<Entry>,
}

/// What kind of position an error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefer {
    /// The error is about a mapping key (e.g. an unknown field).
    Key,
    /// The error is about a value.
    Value,
}

impl LocationIndex {
    /// Parses `text` and indexes it, or returns the parser's error.
    pub fn build(text: &str) -> Result<Self, serde_saphyr::Error> {
        let options = serde_saphyr::options! {
            non_finite_float_policy: NonFiniteFloatPolicy::AsString,
            duplicate_keys: DuplicateKeyPolicy::FirstWins,
        };
        let root: Spanned<Node> = serde_saphyr::from_str_with_options(text, options)?;
        let mut index = Self::default();
        index.walk(String::new(), None, &root);
        Ok(index)
    }

    fn walk(&mut self, path: String, key: Option<Pos>, node: &Spanned<Node>) {
        self.entries.push(Entry {
            path: path.clone(),
            key,
            value: pos(node.referenced),
            kind: match node.value {
                Node::Scalar => "scalar",
                Node::Seq(_) => "sequence",
                Node::Map(_) => "mapping",
            },
        });
        match &node.value {
            Node::Scalar => {}
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(format!("{path}[{i}]"), None, item);
                }
            }
            Node::Map(pairs) => {
                for (k, v) in pairs {
                    let child = if path.is_empty() {
                        k.value.0.clone()
                    } else {
                        format!("{path}.{}", k.value.0)
                    };
                    self.walk(child, pos(k.referenced), v);
                }
            }
        }
    }

    /// The path of the node an error at `at` is about.
    pub fn path_at(&self, at: Pos, prefer: Prefer) -> Option<&str> {
        let exact = |want_key: bool| {
            self.entries.iter().rev().find(|e| {
                let p = if want_key { e.key } else { e.value };
                p == Some(at)
            })
        };
        let found = match prefer {
            Prefer::Key => exact(true).or_else(|| exact(false)),
            Prefer::Value => exact(false).or_else(|| exact(true)),
        };
        if let Some(e) = found {
            return Some(&e.path);
        }
        // Otherwise the last node that starts before the error.
        self.entries
            .iter()
            .filter(|e| e.key.or(e.value).is_some_and(|p| p <= at))
            .max_by_key(|e| e.key.or(e.value))
            .map(|e| e.path.as_str())
    }

    /// The kind (`scalar`, `sequence`, `mapping`) of the node at `path`.
    pub fn kind_of(&self, path: &str) -> Option<&'static str> {
        self.entries.iter().find(|e| e.path == path).map(|e| e.kind)
    }

    /// For a missing-key error at `at`: the path and position of the mapping that lacks the
    /// key. The parser points at the last key of that mapping (or at the mapping itself).
    pub fn container_at(&self, at: Pos) -> Option<(&str, Option<Pos>)> {
        if let Some(e) = self.entries.iter().rev().find(|e| e.key == Some(at)) {
            let parent = parent_path(&e.path);
            let pos = self
                .entries
                .iter()
                .find(|p| p.path == parent)
                .and_then(|p| p.value);
            return Some((parent, pos));
        }
        self.entries
            .iter()
            .rev()
            .find(|e| e.value == Some(at))
            .map(|e| (e.path.as_str(), e.value))
    }

    /// Best-effort position of `path`: the value if the path exists, otherwise the key of
    /// its deepest existing ancestor.
    pub fn position_of(&self, path: &str) -> Option<Pos> {
        let mut current = path;
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == current) {
                if current == path {
                    return e.value.or(e.key);
                }
                return e.key.or(e.value);
            }
            let cut = current.rfind(['.', '['])?;
            current = &current[..cut];
        }
    }
}

/// `a.b[2].c` -> `a.b[2]`, `a.b[2]` -> `a.b`, `a` -> ``.
fn parent_path(path: &str) -> &str {
    path.rfind(['.', '[']).map_or("", |cut| &path[..cut])
}

fn pos(loc: Location) -> Option<Pos> {
    let line = usize::try_from(loc.line()).ok()?;
    let column = usize::try_from(loc.column()).ok()?;
    (line > 0 && column > 0).then_some((line, column))
}

/// A schema-free YAML node: only its shape is kept.
#[derive(Debug)]
enum Node {
    Scalar,
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<KeyText>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut pairs = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            pairs.push((key, value));
        }
        Ok(Node::Map(pairs))
    }
}

/// A mapping key rendered as text (complex keys become `?`).
#[derive(Debug)]
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = KeyText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
        Ok(KeyText(v.to_owned()))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<KeyText, E> {
        Ok(KeyText("?".to_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
        Ok(KeyText("~".to_owned()))
    }
    fn visit_none<E: de::Error>(self) -> Result<KeyText, E> {
        Ok(KeyText("~".to_owned()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<KeyText, D::Error> {
        KeyText::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<KeyText, D::Error> {
        KeyText::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(KeyText("?".to_owned()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(KeyText("?".to_owned()))
    }
}
