//! Strict JSON for JOSE: a JSON object in which no object, at any depth,
//! names a member twice.
//!
//! RFC 7515 §5.2 and RFC 8259 §4 leave duplicate names to the parser, and
//! parsers disagree (first wins, last wins, error). A token or key set with
//! duplicates can mean one thing to us and another to whoever else reads it,
//! so none is read at all: not in a header, claims, a JWKS or a discovery
//! document, and not inside a nested claim either (Kubernetes puts the pod's
//! identity in one).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::error::quoted;

/// Why bytes are not a strict JSON object.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not well-formed JSON (or a number out of range, or nesting deeper
    /// than serde_json's limit of 128).
    #[error("not valid JSON (line {line}, column {column})")]
    Invalid {
        /// Line of the first error, 1-based.
        line: usize,
        /// Column of the first error, 1-based.
        column: usize,
    },
    /// Well-formed JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// An object names a member twice.
    #[error("an object has {name:?} more than once")]
    DuplicateMember {
        /// The repeated name (shortened if long).
        name: String,
    },
}

/// Parses `bytes` as a JSON object, refusing duplicate member names at any
/// depth and anything after the object but whitespace.
///
/// # Errors
///
/// [`JsonError::DuplicateMember`] for the first repeated name,
/// [`JsonError::Invalid`] for anything not JSON, [`JsonError::NotAnObject`]
/// for JSON that is not an object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let mut duplicate = None;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        duplicate: &mut duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(Value::Object(members)) => Ok(members),
        Ok(_) => Err(JsonError::NotAnObject),
        Err(error) => Err(match duplicate {
            Some(name) => JsonError::DuplicateMember { name },
            None => JsonError::Invalid {
                line: error.line(),
                column: error.column(),
            },
        }),
    }
}

/// Reads any JSON value, recording the first duplicate name (shortened)
/// where the caller can see it: serde's errors carry only text.
struct Strict<'a> {
    duplicate: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict {
            duplicate: &mut *self.duplicate,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if members.contains_key(&name) {
                *self.duplicate = Some(quoted(&name));
                return Err(de::Error::custom("an object has a duplicate member name"));
            }
            let value = access.next_value_seed(Strict {
                duplicate: &mut *self.duplicate,
            })?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<Value, JsonError> {
        parse_object(text.as_bytes()).map(Value::Object)
    }

    #[test]
    fn objects_parse_as_serde_json_reads_them() {
        let text = r#"{"a": 1, "b": [true, null, -2, 18446744073709551615, 1.5, "x"],
                       "c": {"d": {"e": "f"}}, "g": "\u00e9"}"#;
        assert_eq!(parse(text), Ok(serde_json::from_str(text).unwrap()));
        assert_eq!(parse(" {} "), Ok(json!({})));
    }

    #[test]
    fn a_repeated_name_is_refused_at_any_depth() {
        assert!(parse(r#"{"alg": "ES256", "kid": "k"}"#).is_ok());
        for (text, name) in [
            (r#"{"alg": "none", "alg": "ES256"}"#, "alg"),
            (r#"{"x": {"a": 1, "a": 2}}"#, "a"),
            (r#"{"x": [{"ok": 1}, {"b": 1, "b": 1}]}"#, "b"),
        ] {
            assert_eq!(
                parse(text),
                Err(JsonError::DuplicateMember { name: name.into() }),
                "{text}"
            );
        }
        // The same name in sibling objects is not a repetition.
        assert!(parse(r#"{"x": {"a": 1}, "y": {"a": 1}}"#).is_ok());
        let long = "n".repeat(1000);
        let Err(JsonError::DuplicateMember { name }) =
            parse(&format!(r#"{{"{long}": 1, "{long}": 2}}"#))
        else {
            panic!("a duplicate was not found")
        };
        assert!(name.len() < 100, "attacker text is shortened");
    }

    #[test]
    fn anything_but_one_object_is_refused() {
        for text in ["[]", "\"x\"", "1", "null"] {
            assert_eq!(parse(text), Err(JsonError::NotAnObject), "{text}");
        }
        assert_eq!(
            parse("{\"a\": }"),
            Err(JsonError::Invalid { line: 1, column: 7 })
        );
        for text in ["", "{", "{} {}", "{}x", "{\"a\": 1e999}", "{'a': 1}"] {
            assert!(
                matches!(parse(text), Err(JsonError::Invalid { .. })),
                "{text:?}"
            );
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(parse(&deep), Err(JsonError::Invalid { .. })));
    }
}
