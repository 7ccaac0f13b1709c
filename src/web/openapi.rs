//! `GET /api/openapi.json`: the OpenAPI 3.1 description of the JSON API, the machine endpoints
//! and every source's endpoints. It is written by hand and checked in (`openapi.json` beside this
//! file) rather than derived from the code, so it says what the API promises; the tests hold it to
//! the routes mounted (below) and to the answers of a running hub (`tests/it/openapi.rs`).

use rocket::http::ContentType;
use rocket::{get, routes, Route, State};

use super::auth::Caller;
use super::error::ApiError;
use super::App;
use crate::people::{Role, Via};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn routes() -> Vec<Route> {
    routes![document]
}

#[get("/api/openapi.json")]
async fn document(
    app: &State<App>,
    caller: Caller,
) -> Result<(ContentType, &'static str), ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    Ok((ContentType::JSON, DOCUMENT))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::DOCUMENT;

    /// The pages and their forms: HTML for a person in a browser, each form with the page's token.
    /// They are not part of the API and the document leaves them out; every other route it must
    /// describe.
    const PAGES: &[(&str, &str)] = &[
        ("get", "/"),
        ("get", "/feed"),
        ("get", "/audit"),
        ("get", "/problems/{id}"),
        ("get", "/problems/{id}/replay"),
        ("post", "/problems/{id}/replay"),
        ("post", "/problems/{id}/ack"),
        ("post", "/problems/{id}/unack"),
        ("post", "/silences"),
        ("post", "/silences/{id}/expire"),
        ("post", "/schedules/{name}/overrides"),
        ("post", "/overrides/{id}/remove"),
        ("get", "/ack/{token}"),
        ("post", "/ack/{token}"),
    ];

    /// A route as the document names it: the method, the path with `{name}` for each
    /// `<name>`, and the names of its query parameters (a page's `<q..>`, which takes any, none).
    fn described(route: &rocket::Route) -> (String, String, Vec<String>) {
        let path = route
            .uri
            .path()
            .replace('<', "{")
            .replace('>', "}")
            .replace("..}", "}");
        let query = route
            .uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|p| !p.ends_with("..>"))
                    .map(|p| p.trim_matches(|c| c == '<' || c == '>').to_string())
                    .collect()
            })
            .unwrap_or_default();
        (route.method.as_str().to_lowercase(), path, query)
    }

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("src/web/openapi.json is JSON")
    }

    /// The operation's parameters of `kind` (`query`, `path`), `$ref`s into the components
    /// followed.
    fn parameters(doc: &Value, operation: &Value, kind: &str) -> BTreeSet<String> {
        operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| match p["$ref"].as_str() {
                Some(r) => doc
                    .pointer(r.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("{r} points nowhere"))
                    .clone(),
                None => p.clone(),
            })
            .filter(|p| p["in"] == kind)
            .map(|p| p["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn every_mounted_route_but_the_pages_is_described_with_its_parameters() {
        let doc = document();
        let mut missing = Vec::new();
        for route in super::super::routes() {
            let (method, path, query) = described(&route);
            if PAGES.contains(&(method.as_str(), path.as_str())) {
                continue;
            }
            let Some(operation) = doc["paths"].get(&path).and_then(|p| p.get(&method)) else {
                missing.push(format!("{} {path}", method.to_uppercase()));
                continue;
            };
            let documented = parameters(&doc, operation, "query");
            for name in &query {
                assert!(
                    documented.contains(name),
                    "{method} {path}: query parameter {name} is not in the document"
                );
            }
            let in_path: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_string)
                .collect();
            assert_eq!(
                parameters(&doc, operation, "path"),
                in_path,
                "{method} {path}: path parameters"
            );
        }
        assert!(
            missing.is_empty(),
            "routes mounted but not in src/web/openapi.json: {missing:?}"
        );
    }

    #[test]
    fn every_source_path_takes_a_traceparent() {
        let doc = document();
        for source in crate::domain::Source::ALL {
            for path in source.paths() {
                let path = path.replace('<', "{").replace('>', "}");
                let operation = &doc["paths"][&path]["post"];
                assert!(
                    parameters(&doc, operation, "header").contains("traceparent"),
                    "POST {path} ({source}) does not say it takes a traceparent"
                );
            }
        }
    }

    #[test]
    fn the_document_describes_only_routes_that_are_mounted() {
        let doc = document();
        let mounted: BTreeSet<(String, String)> = super::super::routes()
            .iter()
            .map(|r| {
                let (method, path, _) = described(r);
                (method, path)
            })
            .collect();
        let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if !methods.contains(&method.as_str()) {
                    continue;
                }
                assert!(
                    mounted.contains(&(method.clone(), path.clone())),
                    "the document describes {} {path}, which hub does not serve",
                    method.to_uppercase()
                );
                assert!(
                    !PAGES.contains(&(method.as_str(), path.as_str())),
                    "{method} {path} is a page"
                );
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_of_this_version() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        // Every `$ref` points at something in the document.
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        out.push(r.clone());
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{r}: only references inside the document"));
            assert!(doc.pointer(pointer).is_some(), "{r} points nowhere");
        }
    }
}
