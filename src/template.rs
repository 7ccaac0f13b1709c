//! Operator-written templates (SMS text, script arguments, webhook bodies), compiled once at load.
//!
//! Tera, with autoescaping off for plain text: an SMS or an argv element. Two kinds escape every
//! value, since problem titles and entity names come from whoever can raise a problem: a mail's HTML
//! part ([`Template::html`]) and a JSON body ([`Template::json`]), where a title holding `", "id":
//! "forged` would otherwise add or override a field of a signed message.

use std::collections::HashMap;

use serde_json::Value;
use tera::{Context, Tera};

const NAME: &str = "t";
/// Tera escapes the templates whose name ends with one of the suffixes it is given.
const HTML_NAME: &str = "t.html";
const JSON_NAME: &str = "t.json";

#[derive(Debug, Clone)]
pub struct Template {
    tera: Tera,
    name: &'static str,
}

impl Template {
    pub fn new(source: &str) -> Result<Template, TemplateError> {
        Template::compile(source, NAME)
    }

    /// A template whose output is HTML: every value is HTML-escaped (`| safe` opts out).
    pub fn html(source: &str) -> Result<Template, TemplateError> {
        Template::compile(source, HTML_NAME)
    }

    /// A template whose output is a JSON document: every value is escaped as the content of a JSON
    /// string, so `"{{ problem.title }}"` stays one string whatever the title holds, and
    /// `{{ value | json_encode }}` writes a whole JSON value (a string with its quotes, an object).
    /// `| safe` opts out, and then only [`check_json`] stands between a value and the body.
    pub fn json(source: &str) -> Result<Template, TemplateError> {
        Template::compile(source, JSON_NAME)
    }

    fn compile(source: &str, name: &'static str) -> Result<Template, TemplateError> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![HTML_NAME, JSON_NAME]);
        if name == JSON_NAME {
            // One escape function per Tera, and each template has its own Tera.
            tera.set_escape_fn(escape_json);
            // Tera's own json_encode is not marked safe, so its output would be escaped again.
            tera.register_filter("json_encode", JsonEncode);
        }
        tera.add_raw_template(name, source).map_err(describe)?;
        Ok(Template { tera, name })
    }

    /// Renders with the keys of `data` (a JSON object) as variables.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let context = Context::from_value(data.clone()).map_err(describe)?;
        self.tera.render(self.name, &context).map_err(describe)
    }
}

/// Why a rendered body is not a JSON document, for the run's error (serde's words: what and where).
pub fn check_json(body: &str) -> Result<(), String> {
    serde_json::from_str::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `s` as the content of a JSON string (RFC 8259, section 7), without the quotes around it.
fn escape_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// `json_encode` for JSON templates: the value as JSON (`pretty=true` indents it), marked safe,
/// since serde has already made it a valid JSON value.
struct JsonEncode;

impl tera::Filter for JsonEncode {
    fn filter(&self, value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
        let pretty = args.get("pretty").and_then(Value::as_bool).unwrap_or(false);
        let text = if pretty {
            serde_json::to_string_pretty(value)
        } else {
            serde_json::to_string(value)
        };
        text.map(Value::String).map_err(tera::Error::json)
    }

    fn is_safe(&self) -> bool {
        true
    }
}

/// A template that does not compile, or cannot render with the data it was given.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// Tera's error with its causes, innermost last: the innermost one says what is wrong.
    message: String,
    #[source]
    source: tera::Error,
}

fn describe(source: tera::Error) -> TemplateError {
    let mut message = source.to_string();
    let mut cause = std::error::Error::source(&source);
    while let Some(c) = cause {
        message = format!("{message}: {c}");
        cause = c.source();
    }
    TemplateError { message, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_without_escaping_and_reports_errors() {
        let t = Template::new("{{ problem.title }} on {{ entity.name }}").unwrap();
        let out = t
            .render(&json!({"problem": {"title": "<b>CPU</b>"}, "entity": {"name": "$(x)"}}))
            .unwrap();
        assert_eq!(out, "<b>CPU</b> on $(x)");
        assert!(Template::new("{{ unclosed").is_err());
        let missing = t.render(&json!({})).unwrap_err().to_string();
        assert!(missing.contains("problem.title"), "{missing}");
    }

    #[test]
    fn html_templates_escape_every_value() {
        let data = json!({"problem": {"title": "<b>CPU</b> & \"more\""}});
        let t = Template::html("<p>{{ problem.title }}</p>").unwrap();
        assert_eq!(
            t.render(&data).unwrap(),
            "<p>&lt;b&gt;CPU&lt;&#x2F;b&gt; &amp; &quot;more&quot;</p>"
        );
        // The plain kind still leaves the same text alone.
        let plain = Template::new("{{ problem.title }}").unwrap();
        assert_eq!(plain.render(&data).unwrap(), "<b>CPU</b> & \"more\"");
    }

    #[test]
    fn json_templates_keep_every_value_inside_its_string() {
        let title = "disk full\", \"id\": \"P-FORGED\", \"severity\": \"none\r\n\\ \u{1}";
        let data = json!({"problem": {"title": title, "id": "P-1", "count": 3,
                                      "tags": ["a\"b"], "none": null}});
        let t = Template::json(
            r#"{"id": "{{ problem.id }}", "title": "{{ problem.title }}", "n": {{ problem.count }},
                "tags": {{ problem.tags | json_encode }}, "t2": {{ problem.title | json_encode }}}"#,
        )
        .unwrap();
        let body = t.render(&data).unwrap();
        check_json(&body).unwrap();
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["id"], "P-1");
        assert_eq!(doc["title"], title);
        assert_eq!(doc["t2"], title);
        assert_eq!(doc["n"], 3);
        assert_eq!(doc["tags"], json!(["a\"b"]));
        assert_eq!(doc.as_object().unwrap().len(), 5, "{body}");
        // A value put outside quotes cannot become structure: the body is not JSON, and says so.
        let bare = Template::json(r#"{"title": {{ problem.title }}}"#).unwrap();
        assert!(check_json(&bare.render(&data).unwrap()).is_err());
    }
}
