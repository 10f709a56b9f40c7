//! The text form of audience definitions: a small lexer and a recursive-descent parser that
//! reports the line and column of the first thing it cannot read. Its recursion is bounded:
//! nesting deeper than [`MAX_DEPTH`] is refused before it descends.

use serde_json::Value;

use super::{
    too_deep, Aggregate, Condition, Filter, Measure, Refusal, Step, Test, Window, MAX_DEPTH,
    MAX_DURATION_MS, MAX_TEXT_BYTES,
};
use crate::profile::ConsentState;
use crate::time::Millis;

/// Where and why a definition could not be read, with the stable code of the refusal
/// (`invalid_audience_syntax`, or the code of a limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub code: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Sym(&'static str),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

const SYMBOLS: [&str; 11] = ["<=", ">=", "!=", "(", ")", "[", "]", ",", ":", "<", ">"];

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut column) = (0, 1, 1);
    let mut out = Vec::new();
    let err = |line, column, message: String| ParseError {
        line,
        column,
        message,
        code: SYNTAX,
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            i += 1;
            line += 1;
            column = 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            column += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let (start_line, start_column) = (line, column);
        let start = i;
        let tok = if c == '"' {
            i += 1;
            let mut escaped = false;
            loop {
                match chars.get(i) {
                    None | Some('\n') => {
                        return Err(err(start_line, start_column, "unterminated string".into()))
                    }
                    Some('\\') if !escaped => escaped = true,
                    Some('"') if !escaped => break,
                    _ => escaped = false,
                }
                i += 1;
            }
            i += 1;
            let raw: String = chars[start..i].iter().collect();
            let s: String = serde_json::from_str(&raw)
                .map_err(|e| err(start_line, start_column, format!("invalid string: {e}")))?;
            Tok::Str(s)
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || matches!(chars[i], '.' | 'e' | 'E')
                    || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            Tok::Num(chars[start..i].iter().collect())
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.')) {
                i += 1;
            }
            Tok::Word(chars[start..i].iter().collect())
        } else if c == '=' {
            i += if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
            Tok::Sym("=")
        } else if let Some(sym) = SYMBOLS.iter().find(|s| {
            s.chars()
                .enumerate()
                .all(|(k, sc)| chars.get(i + k) == Some(&sc))
        }) {
            i += sym.len();
            Tok::Sym(sym)
        } else {
            return Err(err(line, column, format!("unexpected character `{c}`")));
        };
        column += i - start;
        out.push(Token {
            tok,
            line: start_line,
            column: start_column,
        });
    }
    out.push(Token {
        tok: Tok::End,
        line,
        column,
    });
    Ok(out)
}

const SYNTAX: &str = "invalid_audience_syntax";

/// Reads a definition in the text form.
pub fn parse(text: &str) -> Result<Condition, ParseError> {
    let mut p = Parser::new(text, "the definition")?;
    let condition = p.expr()?;
    if p.peek().tok != Tok::End {
        return Err(p.error("expected `and`, `or` or the end of the definition"));
    }
    check(&condition)?;
    Ok(condition)
}

/// Reads property filters as they follow `where` (`total > 100, currency = "EUR"`).
pub fn parse_filters(text: &str) -> Result<Vec<Filter>, ParseError> {
    let mut p = Parser::new(text, "the filters")?;
    let filters = p.filter_list()?;
    if p.peek().tok != Tok::End {
        return Err(p.error("expected `,` and another filter, or the end"));
    }
    // Filters are checked as the event condition they would be part of.
    let as_condition = Condition::Event {
        event: "filters".into(),
        did: true,
        channels: Vec::new(),
        filters,
        measure: None,
        window: Window::Ever,
    };
    check(&as_condition)?;
    let Condition::Event { filters, .. } = as_condition else {
        unreachable!("built above as an event condition")
    };
    Ok(filters)
}

/// The checks every reader of the text runs once it parsed, as a syntax error.
fn check(condition: &Condition) -> Result<(), ParseError> {
    condition.check().map_err(|r: Refusal| ParseError {
        line: 1,
        column: 1,
        message: r.message,
        code: if r.code == "invalid_audience" {
            SYNTAX
        } else {
            r.code
        },
    })
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// How many `not` and `(` enclose the token being read.
    depth: usize,
}

const UNITS: [(&str, Millis); 6] = [
    ("week", 7 * 86_400_000),
    ("day", 86_400_000),
    ("hour", 3_600_000),
    ("minute", 60_000),
    ("second", 1_000),
    ("millisecond", 1),
];

impl Parser {
    /// A parser over `text` (`what` names it in the refusal of a text over the limit).
    fn new(text: &str, what: &str) -> Result<Self, ParseError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(ParseError {
                line: 1,
                column: 1,
                message: format!(
                    "{what} is {} bytes, over the limit of {MAX_TEXT_BYTES}",
                    text.len()
                ),
                code: "audience_too_large",
            });
        }
        Ok(Parser {
            tokens: lex(text)?,
            at: 0,
            depth: 0,
        })
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.at]
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        let t = self.peek();
        let found = match &t.tok {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Num(n) => n.clone(),
            Tok::Sym(s) => format!("`{s}`"),
            Tok::End => "the end".into(),
        };
        ParseError {
            line: t.line,
            column: t.column,
            message: format!("{}, found {found}", message.into()),
            code: SYNTAX,
        }
    }

    /// Enters one more level of `not` or `(`, refused beyond [`MAX_DEPTH`] before any
    /// recursion: the error points at the first token too deep.
    fn descend(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let t = self.peek();
            return Err(ParseError {
                line: t.line,
                column: t.column,
                message: too_deep().message,
                code: "audience_too_deep",
            });
        }
        Ok(())
    }

    /// Whether the next token is this keyword (any case); consumes it if so.
    fn eat(&mut self, keyword: &str) -> bool {
        match &self.peek().tok {
            Tok::Word(w) if w.eq_ignore_ascii_case(keyword) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, keyword: &str) -> Result<(), ParseError> {
        if self.eat(keyword) {
            Ok(())
        } else {
            Err(self.error(format!("expected `{keyword}`")))
        }
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek().tok, Tok::Sym(s) if s == sym) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek().tok.clone() {
            Tok::Str(s) => {
                self.at += 1;
                Ok(s)
            }
            _ => Err(self.error(format!("expected {what} in double quotes"))),
        }
    }

    /// A name: a bare word or a quoted string.
    fn name(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek().tok.clone() {
            Tok::Str(s) | Tok::Word(s) => {
                self.at += 1;
                Ok(s)
            }
            _ => Err(self.error(format!("expected {what}"))),
        }
    }

    fn expr(&mut self) -> Result<Condition, ParseError> {
        let mut any = vec![self.and()?];
        while self.eat("or") {
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Condition::Or { any }
        })
    }

    fn and(&mut self) -> Result<Condition, ParseError> {
        let mut all = vec![self.unary()?];
        while self.eat("and") {
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Condition::And { all }
        })
    }

    fn unary(&mut self) -> Result<Condition, ParseError> {
        if self.eat("not") {
            self.descend()?;
            let not = Box::new(self.unary()?);
            self.depth -= 1;
            return Ok(Condition::Not { not });
        }
        if self.eat_sym("(") {
            self.descend()?;
            let inner = self.expr()?;
            if !self.eat_sym(")") {
                return Err(self.error("expected `)`"));
            }
            self.depth -= 1;
            return Ok(inner);
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Condition, ParseError> {
        if let Tok::Str(_) = self.peek().tok {
            return self.funnel();
        }
        if self.eat("trait") {
            let name = self.name("a trait name")?;
            return Ok(Condition::Trait {
                name,
                test: self.test()?,
            });
        }
        if self.eat("computed") {
            let name = self.name("a computed trait name")?;
            return Ok(Condition::Computed {
                name,
                test: self.test()?,
            });
        }
        if self.eat("did") {
            let did = !self.eat("not");
            let event = self.string("an event name")?;
            let channels = self.channels()?;
            let filters = self.filters()?;
            let measure = self.measure()?;
            let window = self.window()?;
            return Ok(Condition::Event {
                event,
                did,
                channels,
                filters,
                measure,
                window,
            });
        }
        if self.eat("seen") {
            self.expect("on")?;
            let channel = self.channel()?;
            return Ok(Condition::SeenOn {
                channel,
                window: self.window()?,
            });
        }
        if self.eat("last") {
            self.expect("channel")?;
            if !self.eat("is") && !self.eat_sym("=") {
                return Err(self.error("expected `is`"));
            }
            return Ok(Condition::LastChannel {
                channel: self.channel()?,
            });
        }
        if self.eat("is") {
            let known = if self.eat("known") {
                true
            } else if self.eat("anonymous") {
                false
            } else {
                return Err(self.error("expected `known` or `anonymous`"));
            };
            return Ok(Condition::Known { known });
        }
        if self.eat("has") {
            return Ok(Condition::HasIdentifier {
                kind: self.name("an identifier kind (email, phone, user_id, …)")?,
            });
        }
        if self.eat("in") {
            self.expect("audience")?;
            return Ok(Condition::InAudience {
                audience: self.string("an audience id")?,
            });
        }
        if self.eat("consent") {
            let purpose = self.name("a consent purpose")?;
            let channel = if self.eat_sym(":") {
                Some(self.name("a channel")?)
            } else {
                None
            };
            let state = if self.eat("granted") {
                ConsentState::Granted
            } else if self.eat("withdrawn") {
                ConsentState::Withdrawn
            } else if self.eat("unknown") {
                ConsentState::Unknown
            } else {
                return Err(self.error("expected `granted`, `withdrawn` or `unknown`"));
            };
            return Ok(Condition::Consent {
                purpose,
                channel,
                state,
            });
        }
        if self.eat("consented") {
            // `consented(email, marketing)`: the journeys' spelling of
            // `consent marketing:email granted`.
            if !self.eat_sym("(") {
                return Err(self.error("expected `(`"));
            }
            let channel = self.name("a channel")?;
            if !self.eat_sym(",") {
                return Err(self.error("expected `,` and a consent purpose"));
            }
            let purpose = self.name("a consent purpose")?;
            if !self.eat_sym(")") {
                return Err(self.error("expected `)`"));
            }
            return Ok(Condition::Consent {
                purpose,
                channel: Some(channel),
                state: ConsentState::Granted,
            });
        }
        Err(self.error(
            "expected a condition (`trait`, `computed`, `did`, an event funnel, `seen on`, `last channel`, `has`, `is known`, `in audience`, `consent`, `consented(channel, purpose)`, `not` or `(`)",
        ))
    }

    fn channel(&mut self) -> Result<String, ParseError> {
        let t = self.peek().clone();
        let name = self.name("a channel")?.to_ascii_lowercase();
        if super::valid_channel(&name) {
            Ok(name)
        } else {
            Err(ParseError {
                line: t.line,
                column: t.column,
                message: format!("unknown channel `{name}`"),
                code: SYNTAX,
            })
        }
    }

    fn funnel(&mut self) -> Result<Condition, ParseError> {
        let mut steps = vec![self.step()?];
        while self.eat("then") {
            steps.push(self.step()?);
        }
        if steps.len() < 2 {
            return Err(self.error("expected `then` (a funnel has at least two steps)"));
        }
        self.expect("within")?;
        let within_ms = self.duration()?;
        Ok(Condition::Funnel { steps, within_ms })
    }

    fn step(&mut self) -> Result<Step, ParseError> {
        let event = self.string("an event name")?;
        Ok(Step {
            event,
            channels: self.channels()?,
            filters: self.filters()?,
        })
    }

    /// `on web, app`, or nothing.
    fn channels(&mut self) -> Result<Vec<String>, ParseError> {
        let mut channels = Vec::new();
        if self.eat("on") {
            loop {
                channels.push(self.channel()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        Ok(channels)
    }

    fn filters(&mut self) -> Result<Vec<Filter>, ParseError> {
        if self.eat("where") {
            self.filter_list()
        } else {
            Ok(Vec::new())
        }
    }

    /// `property test, property test …`
    fn filter_list(&mut self) -> Result<Vec<Filter>, ParseError> {
        let mut filters = Vec::new();
        loop {
            let property = self.name("a property name")?;
            filters.push(Filter {
                property,
                test: self.test()?,
            });
            if !self.eat_sym(",") {
                return Ok(filters);
            }
        }
    }

    fn measure(&mut self) -> Result<Option<Measure>, ParseError> {
        let aggregate = [
            Aggregate::Count,
            Aggregate::Sum,
            Aggregate::Avg,
            Aggregate::Min,
            Aggregate::Max,
        ]
        .into_iter()
        .find(|a| self.eat(a.as_str()));
        let Some(aggregate) = aggregate else {
            return Ok(None);
        };
        let property = if aggregate == Aggregate::Count {
            None
        } else {
            self.expect("of")?;
            Some(self.name("a property name")?)
        };
        let test = self.test()?;
        if !matches!(
            test,
            Test::Eq { .. }
                | Test::Ne { .. }
                | Test::Lt { .. }
                | Test::Gt { .. }
                | Test::Le { .. }
                | Test::Ge { .. }
        ) {
            return Err(self.error("a measure is compared with =, !=, <, >, <= or >="));
        }
        Ok(Some(Measure {
            aggregate,
            property,
            test,
        }))
    }

    fn window(&mut self) -> Result<Window, ParseError> {
        if self.eat("within") {
            return Ok(Window::Within {
                ms: self.duration()?,
            });
        }
        if self.eat("between") {
            let from = self.date()?;
            self.expect("and")?;
            let to = self.date()?;
            return Ok(Window::Between { from, to });
        }
        self.eat("ever");
        Ok(Window::Ever)
    }

    fn date(&mut self) -> Result<Millis, ParseError> {
        let t = self.peek().clone();
        let s = self.string("a date")?;
        crate::time::parse_date_or_timestamp(&s).ok_or(ParseError {
            line: t.line,
            column: t.column,
            message: format!("`{s}` is not a date (use 2026-01-31 or 2026-01-31T08:00:00Z)"),
            code: SYNTAX,
        })
    }

    fn duration(&mut self) -> Result<Millis, ParseError> {
        let n: i64 = match self.peek().tok.clone() {
            Tok::Num(n) => n
                .parse()
                .map_err(|_| self.error("expected a whole number"))?,
            _ => return Err(self.error("expected a duration such as `2 hours`")),
        };
        self.at += 1;
        let unit = match self.peek().tok.clone() {
            Tok::Word(w) => w.to_ascii_lowercase(),
            _ => String::new(),
        };
        let unit = unit.strip_suffix('s').unwrap_or(&unit).to_string();
        let Some((_, ms)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(self.error("expected a unit (minutes, hours, days, weeks)"));
        };
        self.at += 1;
        if n <= 0 {
            return Err(self.error("a duration must be positive"));
        }
        match n.checked_mul(*ms) {
            Some(total) if total <= MAX_DURATION_MS => Ok(total),
            _ => {
                // Points at the number, not the unit after it.
                self.at -= 2;
                let mut e = self.error(
                    "a duration is at most 10,000 years (3,652,425 days); leave the window out to mean `ever`",
                );
                e.code = "duration_out_of_range";
                Err(e)
            }
        }
    }

    fn test(&mut self) -> Result<Test, ParseError> {
        for (sym, make) in [
            ("=", (|v| Test::Eq { value: v }) as fn(Value) -> Test),
            ("!=", |v| Test::Ne { value: v }),
            ("<=", |v| Test::Le { value: v }),
            (">=", |v| Test::Ge { value: v }),
            ("<", |v| Test::Lt { value: v }),
            (">", |v| Test::Gt { value: v }),
        ] {
            if self.eat_sym(sym) {
                return Ok(make(self.value()?));
            }
        }
        if self.eat("contains") {
            return Ok(Test::Contains {
                value: self.string("the text to look for")?,
            });
        }
        if self.eat("exists") {
            return Ok(Test::Exists);
        }
        if self.eat("in") {
            if !self.eat_sym("[") {
                return Err(self.error("expected `[`"));
            }
            let mut values = vec![self.value()?];
            while self.eat_sym(",") {
                values.push(self.value()?);
            }
            if !self.eat_sym("]") {
                return Err(self.error("expected `,` or `]`"));
            }
            return Ok(Test::In { values });
        }
        for (word, before) in [("before", true), ("after", false)] {
            if self.eat(word) {
                let ms = self.duration()?;
                self.expect("ago")?;
                return Ok(if before {
                    Test::BeforeAgo { ms }
                } else {
                    Test::AfterAgo { ms }
                });
            }
        }
        Err(self.error(
            "expected a test (=, !=, <, >, <=, >=, contains, exists, in [...], before N days ago, after N days ago)",
        ))
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        let v = match self.peek().tok.clone() {
            Tok::Str(s) => Value::String(s),
            Tok::Num(n) => serde_json::from_str(&n).map_err(|_| self.error("invalid number"))?,
            Tok::Word(w) if w == "true" => Value::Bool(true),
            Tok::Word(w) if w == "false" => Value::Bool(false),
            Tok::Word(w) if w == "null" => Value::Null,
            _ => {
                return Err(self.error("expected a value (a number, \"text\", true, false or null)"))
            }
        };
        self.at += 1;
        Ok(v)
    }
}

/// The largest unit that divides `ms`, for printing.
pub(super) fn duration_text(ms: Millis) -> String {
    let (unit, size) = UNITS
        .iter()
        .find(|(_, size)| ms % size == 0)
        .copied()
        .unwrap_or(("millisecond", 1));
    let n = ms / size;
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}
