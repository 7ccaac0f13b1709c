//! Operator-written templates (SMS text, script arguments, webhook bodies), compiled once at load.
//!
//! Tera, with autoescaping off: the output is an SMS, an argv element or a JSON body, never HTML.
//! The one exception, a mail's HTML part, is made with [`Template::html`], which escapes every
//! value, since problem titles and entity names come from whoever can raise a problem.

use serde_json::Value;
use tera::{Context, Tera};

const NAME: &str = "t";
/// Tera escapes the templates whose name ends with one of the suffixes it is given.
const HTML_NAME: &str = "t.html";

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

    fn compile(source: &str, name: &'static str) -> Result<Template, TemplateError> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![HTML_NAME]);
        tera.add_raw_template(name, source).map_err(describe)?;
        Ok(Template { tera, name })
    }

    /// Renders with the keys of `data` (a JSON object) as variables.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let context = Context::from_value(data.clone()).map_err(describe)?;
        self.tera.render(self.name, &context).map_err(describe)
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
}
