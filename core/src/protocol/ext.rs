//! A command's custom header fields ("extFields").
//!
//! A header carries a dozen or so fields and is built or read once per command,
//! so the fields live in one vector in insertion order and are found by a linear
//! scan: no tree nodes, no hashing, and keys a typed header writes are
//! `&'static str`, so writing a header allocates only its values. Insertion
//! order also means a decoded command re-encodes with its fields in the order
//! they arrived.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Custom header fields: string keys to string values, each key at most once,
/// in insertion order. Equality ignores order.
#[derive(Clone, Default)]
pub struct ExtFields {
    entries: Vec<(Cow<'static, str>, String)>,
}

impl ExtFields {
    /// No fields.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// No fields, with room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// Makes room for `n` more fields.
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, returning the value it replaces. A replaced key
    /// keeps its place.
    pub fn insert(
        &mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Option<String> {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every field.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The fields in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }
}

impl PartialEq for ExtFields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for ExtFields {}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<Cow<'static, str>>, V: Into<String>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = Self::new();
        for (k, v) in iter {
            fields.insert(k, v);
        }
        fields
    }
}

impl Serialize for ExtFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Read from a JSON object whose values peers write as strings, numbers, booleans
/// or null. Null leaves the key out (fastjson reads it as absent). A nested object
/// or array is remembered as [`ExtFieldsIn::bad_key`] so the caller can name it.
#[derive(Default)]
pub(crate) struct ExtFieldsIn {
    pub(crate) fields: ExtFields,
    pub(crate) bad_key: Option<String>,
}

impl<'de> Deserialize<'de> for ExtFieldsIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = ExtFieldsIn;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of header fields")
    }

    fn visit_unit<E: de::Error>(self) -> Result<ExtFieldsIn, E> {
        Ok(ExtFieldsIn::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtFieldsIn, A::Error> {
        let mut out = ExtFieldsIn {
            fields: ExtFields::with_capacity(map.size_hint().unwrap_or(8)),
            bad_key: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match map.next_value::<Scalar>()? {
                Scalar::Value(v) => {
                    out.fields.insert(key, v); // a repeated key: the last one wins
                }
                Scalar::Null => {}
                Scalar::Nested => {
                    out.bad_key.get_or_insert(key);
                }
            }
        }
        Ok(out)
    }
}

/// One field's value as JSON gives it, rendered as the string Java would read.
enum Scalar {
    Value(String),
    Null,
    Nested,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean or null")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Value(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Value(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Value(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Value(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Value(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        // The shortest form that reads back as the same number, as serde_json
        // writes it.
        Ok(serde_json::Number::from_f64(v).map_or(Scalar::Null, |n| Scalar::Value(n.to_string())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nested)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_in_place_and_equality_ignores_order() {
        let mut a = ExtFields::new();
        assert_eq!(a.insert("x", "1"), None);
        a.insert("y", "2");
        assert_eq!(a.insert("x", "3"), Some("1".to_owned()));
        assert_eq!(a.iter().collect::<Vec<_>>(), [("x", "3"), ("y", "2")]);
        let b: ExtFields = [("y", "2"), ("x", "3")].into_iter().collect();
        assert_eq!(a, b);
        let c: ExtFields = [("y", "2"), ("x", "4")].into_iter().collect();
        assert_ne!(a, c);
        assert_eq!(a.remove("x"), Some("3".to_owned()));
        assert_eq!(a.get("x"), None);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn json_values_read_as_java_strings() {
        let read = |json: &str| serde_json::from_str::<ExtFieldsIn>(json).unwrap();
        let r =
            read(r#"{"s":"v","i":-3,"u":18446744073709551615,"f":1.5,"b":true,"n":null,"s":"w"}"#);
        assert_eq!(r.bad_key, None);
        let want: ExtFields = [
            ("s", "w"),
            ("i", "-3"),
            ("u", "18446744073709551615"),
            ("f", "1.5"),
            ("b", "true"),
        ]
        .into_iter()
        .collect();
        assert_eq!(r.fields, want);
        let r = read(r#"{"a":"1","o":{"x":[1,{}]},"l":[]}"#);
        assert_eq!(r.bad_key.as_deref(), Some("o"));
        assert!(read("null").fields.is_empty());
    }
}
