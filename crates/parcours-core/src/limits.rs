//! The limits every reader of Parcours' JSON documents has, checked once where a document comes
//! in (an event at ingest, a definition at save), so that nothing stored can later fail to read.
//!
//! `serde_json` refuses, when it builds a value, numbers beyond the range of a 64-bit float,
//! strings with a lone UTF-16 surrogate, and nesting deeper than 128 levels; PostgreSQL refuses
//! the NUL character in text and in `jsonb`. A raw event is only checked for syntax when it is
//! accepted, so each of these was acknowledged, stored, and then stopped every reader that
//! parsed it. [`check_text`] walks a document once, without building it, and names the first
//! limit it breaks.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// How deep objects and arrays may nest in a document (the document itself is level 1).
pub const MAX_DEPTH: usize = 64;
/// How many keys one object may hold.
pub const MAX_KEYS: usize = 1_000;

/// The first limit a document breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonProblem {
    /// Not JSON at all.
    Syntax(String),
    /// Objects and arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// An object with more than [`MAX_KEYS`] keys.
    TooManyKeys,
    /// A number beyond the range of a 64-bit float (such as `1e400`).
    NumberOutOfRange,
    /// A string (or key) with a lone UTF-16 surrogate (`"\ud800"`) or a NUL character.
    InvalidString,
}

impl JsonProblem {
    /// The stable code of the problem (an API error code and a quarantine reason).
    pub fn code(&self) -> &'static str {
        match self {
            JsonProblem::Syntax(_) => "invalid_json",
            JsonProblem::TooDeep => "too_deep",
            JsonProblem::TooManyKeys => "too_many_keys",
            JsonProblem::NumberOutOfRange => "number_out_of_range",
            JsonProblem::InvalidString => "invalid_string",
        }
    }
}

impl fmt::Display for JsonProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonProblem::Syntax(e) => write!(f, "not valid JSON: {e}"),
            JsonProblem::TooDeep => write!(f, "objects and arrays nested deeper than {MAX_DEPTH} levels"),
            JsonProblem::TooManyKeys => write!(f, "an object with more than {MAX_KEYS} keys"),
            JsonProblem::NumberOutOfRange => {
                write!(f, "a number beyond the range of a 64-bit float (about ±1.8e308)")
            }
            JsonProblem::InvalidString => write!(
                f,
                "a string holds a lone UTF-16 surrogate (such as \\ud800) or a NUL character (\\u0000)"
            ),
        }
    }
}

/// Checks a JSON text against every limit, without building it.
pub fn check_text(text: &str) -> Result<(), JsonProblem> {
    let found = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let walked = Node {
        depth: 1,
        found: &found,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match walked {
        Ok(()) => Ok(()),
        Err(e) => Err(found.take().unwrap_or_else(|| classify(&e))),
    }
}

/// Checks a value built elsewhere (an admin document) against the same limits: depth, keys
/// and strings (a built value has no number out of range).
pub fn check_value(value: &Value) -> Result<(), JsonProblem> {
    check_value_within(value, MAX_DEPTH)
}

/// [`check_value`] with another depth limit (definitions, whose conditions nest, allow more;
/// still below the 128 levels `serde_json` reads). Iterative: it runs before anything
/// recursive reads the value.
pub fn check_value_within(value: &Value, max_depth: usize) -> Result<(), JsonProblem> {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::String(s) => check_str(s)?,
            Value::Array(items) => {
                if depth > max_depth {
                    return Err(JsonProblem::TooDeep);
                }
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Object(map) => {
                if depth > max_depth {
                    return Err(JsonProblem::TooDeep);
                }
                if map.len() > MAX_KEYS {
                    return Err(JsonProblem::TooManyKeys);
                }
                for (k, v) in map {
                    check_str(k)?;
                    stack.push((v, depth + 1));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A string every store can hold: no NUL character (a Rust string has no lone surrogate).
pub fn check_str(s: &str) -> Result<(), JsonProblem> {
    if s.contains('\0') {
        Err(JsonProblem::InvalidString)
    } else {
        Ok(())
    }
}

/// What `serde_json` itself refused: it reports these as messages only.
fn classify(e: &serde_json::Error) -> JsonProblem {
    let message = e.to_string();
    if message.contains("number out of range") {
        JsonProblem::NumberOutOfRange
    } else if message.contains("surrogate")
        || message.contains("hex escape")
        || message.contains("unicode code point")
    {
        JsonProblem::InvalidString
    } else if message.contains("recursion limit") {
        JsonProblem::TooDeep
    } else {
        JsonProblem::Syntax(message)
    }
}

/// One value of the document, `depth` levels down; the first problem found is kept in `found`
/// (a `serde` error carries only a message).
#[derive(Clone, Copy)]
struct Node<'a> {
    depth: usize,
    found: &'a Cell<Option<JsonProblem>>,
}

impl Node<'_> {
    fn fail<E: de::Error>(&self, problem: JsonProblem) -> E {
        let message = problem.to_string();
        self.found.set(Some(problem));
        E::custom(message)
    }

    /// The node of an object's or array's members; fails if the container is itself too deep.
    fn members<E: de::Error>(self) -> Result<Self, E> {
        if self.depth > MAX_DEPTH {
            return Err(self.fail(JsonProblem::TooDeep));
        }
        Ok(Node {
            depth: self.depth + 1,
            found: self.found,
        })
    }

    fn string<E: de::Error>(&self, s: &str) -> Result<(), E> {
        check_str(s).map_err(|p| self.fail(p))
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(self.fail(JsonProblem::NumberOutOfRange))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.string(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.members()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.members()?;
        let mut keys = 0usize;
        while map.next_key_seed(Key(self))?.is_some() {
            keys += 1;
            if keys > MAX_KEYS {
                return Err(self.fail(JsonProblem::TooManyKeys));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// An object key: a string like any other.
struct Key<'a>(Node<'a>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn accepts_what_every_reader_reads() {
        for ok in [
            r#"{"a":1,"b":[true,null,"x"],"c":{"d":-1.5e300}}"#,
            r#""caf\u00e9 \ud83d\ude00""#,
            "18446744073709551616",
            "1e-400",
        ] {
            assert_eq!(check_text(ok), Ok(()), "{ok}");
            let v: Value = serde_json::from_str(ok).unwrap();
            assert_eq!(check_value(&v), Ok(()), "{ok}");
        }
        assert_eq!(check_text(&nested(MAX_DEPTH)), Ok(()));
    }

    #[test]
    fn names_the_limit_broken() {
        assert_eq!(
            check_text(&nested(MAX_DEPTH + 1)),
            Err(JsonProblem::TooDeep)
        );
        assert_eq!(check_text(&nested(10_000)), Err(JsonProblem::TooDeep));
        assert_eq!(
            check_text(r#"{"n":1e400}"#),
            Err(JsonProblem::NumberOutOfRange)
        );
        assert_eq!(
            check_text(r#"{"n":-1e400}"#),
            Err(JsonProblem::NumberOutOfRange)
        );
        assert_eq!(
            check_text(r#"{"s":"\ud800"}"#),
            Err(JsonProblem::InvalidString)
        );
        assert_eq!(
            check_text(r#"{"\ud800":1}"#),
            Err(JsonProblem::InvalidString)
        );
        assert_eq!(
            check_text(r#"{"s":"a\u0000b"}"#),
            Err(JsonProblem::InvalidString)
        );
        assert_eq!(
            check_text(r#"{"a\u0000":1}"#),
            Err(JsonProblem::InvalidString)
        );
        let keys: Vec<String> = (0..=MAX_KEYS).map(|i| format!("\"k{i}\":{i}")).collect();
        assert_eq!(
            check_text(&format!("{{{}}}", keys.join(","))),
            Err(JsonProblem::TooManyKeys)
        );
        assert!(matches!(check_text("{nope"), Err(JsonProblem::Syntax(_))));
        assert!(matches!(check_text("{} {}"), Err(JsonProblem::Syntax(_))));
    }

    #[test]
    fn built_values_are_checked_the_same_way() {
        let mut deep = Value::Null;
        for _ in 0..=MAX_DEPTH {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(check_value(&deep), Err(JsonProblem::TooDeep));
        assert_eq!(
            check_value(&serde_json::json!({"a": ["x\u{0}"]})),
            Err(JsonProblem::InvalidString)
        );
    }
}

/// A size in bytes as people read it in an error message: `40960 bytes (40 KiB)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n < 1024 {
            return write!(f, "{n} bytes");
        }
        let (value, unit) = if n < 1024 * 1024 {
            (n as f64 / 1024.0, "KiB")
        } else {
            (n as f64 / (1024.0 * 1024.0), "MiB")
        };
        // Whole numbers without decimals: "32 KiB", not "32.0 KiB".
        if (value - value.round()).abs() < 0.05 {
            write!(f, "{n} bytes ({value:.0} {unit})")
        } else {
            write!(f, "{n} bytes ({value:.1} {unit})")
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::Size;

    #[test]
    fn sizes_read_with_their_unit() {
        assert_eq!(Size(512).to_string(), "512 bytes");
        assert_eq!(Size(32_768).to_string(), "32768 bytes (32 KiB)");
        assert_eq!(Size(40_000).to_string(), "40000 bytes (39.1 KiB)");
        assert_eq!(Size(512 * 1024).to_string(), "524288 bytes (512 KiB)");
        assert_eq!(
            Size(3 * 1024 * 1024 / 2).to_string(),
            "1572864 bytes (1.5 MiB)"
        );
    }
}
