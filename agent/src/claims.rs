//! JWT claims (JSON) as the `google.protobuf.Struct` that
//! `ValidateJWTSVIDResponse.claims` carries.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::{Map, Value as Json};

/// Converts a JSON object. Numbers become doubles, as the Struct type
/// allows nothing else; `exp`, `iat` and `nbf` are exact up to 2^53.
pub(crate) fn to_struct(object: Map<String, Json>) -> Struct {
    Struct {
        fields: object
            .into_iter()
            .map(|(name, value)| (name, to_value(value)))
            .collect(),
    }
}

fn to_value(json: Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Json::Object(object) => Kind::StructValue(to_struct(object)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_claims_convert() {
        let json = serde_json::json!({
            "sub": "spiffe://example.org/a",
            "aud": ["db"],
            "exp": 1_900_000_000_i64,
            "nested": {"ok": true, "none": null},
        });
        let Json::Object(object) = json else {
            unreachable!("a JSON object literal")
        };
        let claims = to_struct(object);
        assert_eq!(
            claims.fields["sub"].kind,
            Some(Kind::StringValue("spiffe://example.org/a".into()))
        );
        assert_eq!(
            claims.fields["exp"].kind,
            Some(Kind::NumberValue(1_900_000_000.0))
        );
        let Some(Kind::ListValue(aud)) = &claims.fields["aud"].kind else {
            panic!("aud is not a list");
        };
        assert_eq!(aud.values.len(), 1);
        let Some(Kind::StructValue(nested)) = &claims.fields["nested"].kind else {
            panic!("nested is not a struct");
        };
        assert_eq!(nested.fields["ok"].kind, Some(Kind::BoolValue(true)));
        assert_eq!(nested.fields["none"].kind, Some(Kind::NullValue(0)));
    }
}
