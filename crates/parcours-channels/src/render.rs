//! Liquid templates. A template that does not parse or does not render stops its message
//! with the reason: a broken message is never sent.

use parcours_core::journey::Message;
use serde_json::Value;

/// Why a message could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {message}")]
pub struct RenderError {
    /// Which text (`subject`, `html`, `text`, `title`).
    pub part: &'static str,
    pub message: String,
}

/// A message's texts, rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub title: Option<String>,
}

/// The longest rendered text: a template that renders more is refused.
pub const MAX_RENDERED: usize = 256 * 1024;

/// Renders Liquid templates (one parser, built once). A template is parsed once: the same
/// text renders every later message from its parsed form (a journey's thousands of messages
/// share a handful of templates).
pub struct Renderer {
    parser: liquid::Parser,
    parsed: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Parsed>>>,
}

/// A template parsed, and the dotted variable paths it names.
struct Parsed {
    template: liquid::Template,
    paths: Vec<Vec<String>>,
}

/// Parsed templates kept at most (then forgotten all at once and parsed again as needed).
const PARSED_KEPT: usize = 4_096;

impl Default for Renderer {
    fn default() -> Self {
        Self {
            parser: liquid::ParserBuilder::with_stdlib()
                .build()
                .expect("the standard Liquid library builds"),
            parsed: Default::default(),
        }
    }
}

impl Renderer {
    /// Checks that a template parses (what saving a journey does).
    pub fn check(&self, part: &'static str, template: &str) -> Result<(), RenderError> {
        self.parser
            .parse(template)
            .map(|_| ())
            .map_err(|e| RenderError {
                part,
                message: e.to_string(),
            })
    }

    /// A template parsed (from the cache when it was parsed before).
    fn parsed(
        &self,
        part: &'static str,
        template: &str,
    ) -> Result<std::sync::Arc<Parsed>, RenderError> {
        if let Some(p) = self.parsed.lock().expect("not poisoned").get(template) {
            return Ok(p.clone());
        }
        let parsed = std::sync::Arc::new(Parsed {
            template: self.parser.parse(template).map_err(|e| RenderError {
                part,
                message: e.to_string(),
            })?,
            paths: paths_of(template),
        });
        let mut cache = self.parsed.lock().expect("not poisoned");
        if cache.len() >= PARSED_KEPT {
            cache.clear();
        }
        cache.insert(template.to_string(), parsed.clone());
        Ok(parsed)
    }

    /// Renders one template with `globals` (a JSON object: `traits`, `event`, `journey`,
    /// `profile` …).
    pub fn render_one(
        &self,
        part: &'static str,
        template: &str,
        globals: &liquid::Object,
    ) -> Result<String, RenderError> {
        let fail = |message: String| RenderError { part, message };
        let t = self.parsed(part, template)?;
        let out = t
            .template
            .render(globals)
            .map_err(|e| fail(e.to_string()))?;
        if out.len() > MAX_RENDERED {
            return Err(fail(format!(
                "renders {} bytes, over the limit of {MAX_RENDERED}",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Renders one text that is not a message's (a webhook's body) with the same globals
    /// (`traits`, `event`, `journey` …; a missing variable renders as nothing).
    pub fn render_text(
        &self,
        part: &'static str,
        template: &str,
        globals: &Value,
    ) -> Result<String, RenderError> {
        let mut globals = globals.clone();
        fill(&self.parsed(part, template)?.paths, &mut globals);
        self.render_one(part, template, &to_object(&globals))
    }

    /// Renders every text of a message. As in Shopify's Liquid, a variable that does not
    /// exist renders as nothing (so `{{ traits.first_name | default: 'Hello' }}` says Hello to
    /// a customer without a first name); a template that does not parse, or a filter that
    /// fails, is an error.
    pub fn render(&self, message: &Message, globals: &Value) -> Result<Rendered, RenderError> {
        let mut globals = globals.clone();
        for (part, t) in [
            ("subject", &message.subject),
            ("html", &message.html),
            ("text", &message.text),
            ("title", &message.title),
        ] {
            if let Some(t) = t {
                fill(&self.parsed(part, t)?.paths, &mut globals);
            }
        }
        let globals = to_object(&globals);
        let part =
            |name: &'static str, t: &Option<String>| -> Result<Option<String>, RenderError> {
                t.as_deref()
                    .map(|t| self.render_one(name, t, &globals))
                    .transpose()
            };
        Ok(Rendered {
            subject: part("subject", &message.subject)?,
            html: part("html", &message.html)?,
            text: part("text", &message.text)?,
            title: part("title", &message.title)?,
        })
    }
}

/// Adds `null` for every dotted variable path a template names that `globals` lacks, with
/// empty objects for the levels missing on the way (a path through a value that is not an
/// object is left alone).
fn fill(paths: &[Vec<String>], globals: &mut Value) {
    for p in paths {
        let mut at = &mut *globals;
        for (i, part) in p.iter().enumerate() {
            let Value::Object(map) = at else { break };
            // A missing level on the way is an empty object, so the path's end reads as
            // nothing rather than failing on an index into nothing.
            let missing = if i + 1 < p.len() {
                Value::Object(Default::default())
            } else {
                Value::Null
            };
            at = map.entry(part.clone()).or_insert(missing);
        }
    }
}

/// The dotted variable paths a template names.
fn paths_of(template: &str) -> Vec<Vec<String>> {
    static PATH: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    static TAG: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    let tag =
        TAG.get_or_init(|| regex_lite::Regex::new(r"(?s)\{\{.*?\}\}|\{%.*?%\}").expect("valid"));
    let path = PATH.get_or_init(|| {
        regex_lite::Regex::new(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)+")
            .expect("valid")
    });
    let mut out = Vec::new();
    for t in tag.find_iter(template) {
        // Quoted text is not a variable.
        let unquoted = strip_quotes(t.as_str());
        for p in path.find_iter(&unquoted) {
            out.push(p.as_str().split('.').map(str::to_string).collect());
        }
    }
    out
}

fn strip_quotes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

fn to_object(v: &Value) -> liquid::Object {
    match liquid::model::to_value(v) {
        Ok(liquid::model::Value::Object(o)) => o,
        _ => liquid::Object::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parcours_core::journey::MessageChannel;
    use serde_json::json;

    fn email(subject: &str, html: &str) -> Message {
        Message {
            channel: MessageChannel::Email,
            purpose: "marketing".into(),
            subject: Some(subject.into()),
            html: Some(html.into()),
            text: None,
            title: None,
            fallback: vec![],
            fallback_after_ms: None,
            variants: Default::default(),
        }
    }

    #[test]
    fn a_template_parsed_once_renders_each_customer_her_own() {
        let r = Renderer::default();
        let m = email(
            "{{ traits.first_name | default: 'Hello' }}!",
            "{{ event.properties.name }}",
        );
        let lea =
            json!({"traits": {"first_name": "Léa"}, "event": {"properties": {"name": "shoes"}}});
        let out = r.render(&m, &lea).unwrap();
        assert_eq!(
            (out.subject.as_deref(), out.html.as_deref()),
            (Some("Léa!"), Some("shoes"))
        );
        // The second time the template comes from the cache: her missing paths still read
        // as nothing.
        let out = r.render(&m, &json!({"traits": {}, "event": {}})).unwrap();
        assert_eq!(
            (out.subject.as_deref(), out.html.as_deref()),
            (Some("Hello!"), Some(""))
        );
        assert_eq!(r.parsed.lock().unwrap().len(), 2);
        // A template that does not parse is refused every time, and not kept.
        let broken = email("{{ traits.first_name ", "x");
        for _ in 0..2 {
            assert_eq!(r.render(&broken, &lea).unwrap_err().part, "subject");
        }
        assert_eq!(
            r.parsed.lock().unwrap().len(),
            2,
            "the broken one was not kept"
        );
    }

    #[test]
    fn renders_traits_and_the_event_with_defaults() {
        let r = Renderer::default();
        let m = email(
            "{{ traits.first_name | default: 'Hello' }}, your cart is waiting",
            "<p>You left {{ event.properties.name }} in your cart.</p>",
        );
        let out = r
            .render(&m, &json!({"traits": {"first_name": "Léa"}, "event": {"properties": {"name": "Red shoes"}}}))
            .unwrap();
        assert_eq!(out.subject.as_deref(), Some("Léa, your cart is waiting"));
        assert_eq!(
            out.html.as_deref(),
            Some("<p>You left Red shoes in your cart.</p>")
        );
        let out = r
            .render(
                &m,
                &json!({"traits": {}, "event": {"properties": {"name": "x"}}}),
            )
            .unwrap();
        assert_eq!(out.subject.as_deref(), Some("Hello, your cart is waiting"));
    }

    #[test]
    fn broken_templates_are_refused_with_their_part() {
        let r = Renderer::default();
        let e = r
            .render(&email("{{ traits.first_name ", "x"), &json!({}))
            .unwrap_err();
        assert_eq!(e.part, "subject");
        assert!(r.check("html", "{% if %}").is_err());
        // A filter that does not exist is an error; a variable that does not exist is nothing.
        let e = r
            .render(&email("Hi", "{{ 'x' | nosuchfilter }}"), &json!({}))
            .unwrap_err();
        assert_eq!(e.part, "html");
        let out = r
            .render(
                &email(
                    "Hi {{ traits.first_name }}!",
                    "{% if traits.vip.since %}VIP{% endif %}ok",
                ),
                &json!({"traits": {"vip": 3}}),
            )
            .unwrap();
        assert_eq!(out.subject.as_deref(), Some("Hi !"));
        assert_eq!(out.html.as_deref(), Some("ok"));
    }
}
