//! What ADT's JSON reader refuses in a body that is otherwise valid JSON: a number no 64-bit
//! float can hold (`1e400`), and arrays or objects nested deeper than [`MAX_JSON_DEPTH`].
//!
//! Items are read as raw JSON (`serde_json::value::RawValue`), which checks the syntax only, so
//! such a body passes the reader and would be refused by ADT at write time. The planner runs
//! [`json_problem`] on every item so `plan` rejects what `load` would dead-letter, before a
//! single write.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The deepest nesting of arrays and objects accepted. The .NET JSON readers behind ADT stop
/// at 64 levels by default (`JsonReaderOptions.MaxDepth`, and Json.NET's `MaxDepth` since 13.0);
/// DTDL itself allows complex schemas only 5 (v2) or 8 (v3) levels deep, so no valid twin comes
/// near it.
pub const MAX_JSON_DEPTH: usize = 64;

/// Why ADT would refuse this JSON text, if it would. The text is already known to be JSON.
pub fn json_problem(text: &str) -> Option<String> {
    // Our depth limit is below serde_json's own (128), so ours speaks first.
    let mut de = serde_json::Deserializer::from_str(text);
    match (DepthCheck { depth: 0 }).deserialize(&mut de) {
        Ok(()) => None,
        Err(e) if e.to_string().starts_with(TOO_DEEP) => Some(format!(
            "its arrays or objects are nested more than {MAX_JSON_DEPTH} levels deep (at column {}), deeper than ADT reads; flatten the value",
            e.column()
        )),
        Err(e) => Some(format!(
            "{e}: ADT reads JSON numbers as 64-bit floating point (at most about 1.8e308); write a smaller number, or the value as a string"
        )),
    }
}

const TOO_DEEP: &str = "nested too deeply";

/// Walks a value without keeping it, failing past [`MAX_JSON_DEPTH`] or on a number out of
/// range (serde_json fails on those while parsing the number, whatever the visitor).
struct DepthCheck {
    depth: usize,
}

impl DepthCheck {
    fn enter<E: serde::de::Error>(&self) -> Result<DepthCheck, E> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(DepthCheck { depth: self.depth + 1 })
    }
}

impl<'de> DeserializeSeed<'de> for DepthCheck {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DepthCheck {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while seq.next_element_seed(DepthCheck { depth: inner.depth })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(DepthCheck { depth: inner.depth })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn numbers_past_a_double_and_nesting_past_the_limit_are_named() {
        assert_eq!(json_problem(r#"{"a":[1,2.5,-3e300,"x",null,true,{"b":{}}]}"#), None);
        let big = json_problem(r#"{"p":1e400}"#).expect("1e400 is refused");
        assert!(big.contains("number out of range") && big.contains("64-bit"), "{big}");
        assert!(json_problem(r#"{"p":-1e400}"#).is_some());
        // Tiny numbers round to zero: ADT reads them too.
        assert_eq!(json_problem(r#"{"p":1e-400}"#), None);
        assert_eq!(json_problem(&nested(MAX_JSON_DEPTH)), None);
        let deep = json_problem(&nested(MAX_JSON_DEPTH + 1)).expect("too deep");
        assert!(deep.contains("nested more than 64 levels"), "{deep}");
        // Deeper than serde_json's own limit, without a stack overflow.
        assert!(json_problem(&nested(100_000)).is_some());
    }
}
