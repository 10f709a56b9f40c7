//! A YAML (or JSON, which YAML reads too) document as a tree of nodes that know where they
//! were written, so that every error about a journey can point at its line and column.
//!
//! Only what a journey needs is accepted: mappings, sequences and scalars. Anchors, aliases
//! and tags are refused (an alias can make a small text expand without bound), and so are
//! documents deeper than [`MAX_DEPTH`], larger than [`MAX_BYTES`] or holding more than
//! [`MAX_NODES`] nodes. The tree is built without recursion.

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::Problem;

/// The largest document accepted.
pub const MAX_BYTES: usize = 256 * 1024;
/// How deep mappings and sequences may nest.
pub const MAX_DEPTH: usize = 32;
/// How many nodes (keys, values, items) one document may hold.
pub const MAX_NODES: usize = 20_000;

/// Where something was written: line and column, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub at: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar as written; `quoted` when it was in quotes or a block (`|`, `>`), so that
    /// `"50"` stays a string while `50` reads as a number.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Keys in the order written.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub at: Pos,
    pub name: String,
}

impl Node {
    pub fn what(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } => "a value",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The scalar's text when the node is a scalar.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The node as JSON: unquoted scalars read as the YAML core schema says (`null`, `~`,
    /// `true`, `false`, numbers), everything else as strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Scalar { text, quoted: true } => Value::String(text.clone()),
            Kind::Scalar {
                text,
                quoted: false,
            } => plain_json(text),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn plain_json(text: &str) -> serde_json::Value {
    use serde_json::Value;
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    let numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    if numeric {
        if let Some(n) = text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

fn pos(m: &saphyr_parser::Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

fn problem(at: Pos, message: impl Into<String>) -> Problem {
    Problem::new("invalid_journey_syntax", at, message)
}

enum Open {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Key, Node)>, Option<Key>),
}

/// Reads one YAML or JSON document.
pub fn parse(text: &str) -> Result<Node, Problem> {
    if text.len() > MAX_BYTES {
        return Err(Problem::new(
            "journey_too_large",
            Pos { line: 1, column: 1 },
            format!(
                "the document is {} bytes, over the limit of {MAX_BYTES}",
                text.len()
            ),
        ));
    }
    if let Some(i) = text.find('\0') {
        let line = text[..i].matches('\n').count() + 1;
        return Err(problem(
            Pos { line, column: 1 },
            "the document holds a NUL character",
        ));
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    let mut documents = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| {
            if e.info().contains("recursion limit") {
                Problem::new(
                    "journey_too_deep",
                    pos(e.marker()),
                    format!("lists and mappings nest deeper than {MAX_DEPTH} levels"),
                )
            } else {
                problem(pos(e.marker()), e.info().to_string())
            }
        })?;
        let at = pos(&span.start);
        let opens_seq = matches!(event, Event::SequenceStart(..));
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(problem(at, "one document only: remove the second `---`"));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(problem(
                    at,
                    "aliases (`*name`) are not accepted: write the value out",
                ))
            }
            Event::Scalar(value, style, anchor, tag) => {
                refuse_anchor_or_tag(at, anchor, tag.is_some())?;
                Some(Node {
                    at,
                    kind: Kind::Scalar {
                        text: value.into_owned(),
                        quoted: style != ScalarStyle::Plain,
                    },
                })
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                refuse_anchor_or_tag(at, anchor, tag.is_some())?;
                if stack.len() >= MAX_DEPTH {
                    return Err(Problem::new(
                        "journey_too_deep",
                        at,
                        format!("lists and mappings nest deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(if opens_seq {
                    Open::Seq(at, Vec::new())
                } else {
                    Open::Map(at, Vec::new(), None)
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::Seq(at, items)) => Some(Node {
                    at,
                    kind: Kind::Seq(items),
                }),
                Some(Open::Map(at, entries, _)) => Some(Node {
                    at,
                    kind: Kind::Map(entries),
                }),
                None => return Err(problem(at, "unbalanced document")),
            },
        };
        let Some(node) = node else { continue };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(Problem::new(
                "journey_too_large",
                node.at,
                format!("the document holds more than {MAX_NODES} values"),
            ));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, key)) => match key.take() {
                None => {
                    let Kind::Scalar { text, .. } = node.kind else {
                        return Err(problem(
                            node.at,
                            "a key must be a plain name, not a list or a mapping",
                        ));
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == text) {
                        return Err(problem(
                            node.at,
                            format!(
                                "`{text}` is given twice (first at line {}, column {})",
                                first.at.line, first.at.column
                            ),
                        ));
                    }
                    *key = Some(Key {
                        at: node.at,
                        name: text,
                    });
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
    root.ok_or_else(|| problem(Pos { line: 1, column: 1 }, "the document is empty"))
}

fn refuse_anchor_or_tag(at: Pos, anchor: usize, tagged: bool) -> Result<(), Problem> {
    if anchor != 0 {
        return Err(problem(
            at,
            "anchors (`&name`) are not accepted: write the value out",
        ));
    }
    if tagged {
        return Err(problem(at, "tags (`!name`) are not accepted"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_keys_keep_their_order() {
        let n = parse("a: 1\nb:\n  - x\n  - \"2\"\n").unwrap();
        let Kind::Map(entries) = &n.kind else {
            panic!("{n:?}")
        };
        assert_eq!(entries[0].0.name, "a");
        assert_eq!(entries[0].0.at, Pos { line: 1, column: 1 });
        assert_eq!(entries[1].1.at.line, 3);
        assert_eq!(n.to_json(), serde_json::json!({"a": 1, "b": ["x", "2"]}));
    }

    #[test]
    fn json_reads_as_yaml() {
        let n = parse("{\"a\": [1, 2.5, true, null], \"b\": \"c\"}").unwrap();
        assert_eq!(
            n.to_json(),
            serde_json::json!({"a": [1, 2.5, true, null], "b": "c"})
        );
    }

    #[test]
    fn hostile_documents_are_refused_with_a_position() {
        let bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n";
        let e = parse(bomb).unwrap_err();
        assert_eq!(e.code, "invalid_journey_syntax");
        assert_eq!((e.at.line, e.at.column), (1, 4));

        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse(&deep).unwrap_err().code, "journey_too_deep");

        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("twice"), "{e:?}");
        assert_eq!(e.at.line, 2);

        let e = parse("a: [1, 2\n").unwrap_err();
        assert_eq!(e.code, "invalid_journey_syntax");

        assert_eq!(parse("a: 1\n---\nb: 2\n").unwrap_err().at.line, 2);
        assert_eq!(parse("").unwrap_err().code, "invalid_journey_syntax");
        assert_eq!(
            parse("a: !!str 1").unwrap_err().code,
            "invalid_journey_syntax"
        );
        let big = "x".repeat(MAX_BYTES + 1);
        assert_eq!(parse(&big).unwrap_err().code, "journey_too_large");
    }
}
