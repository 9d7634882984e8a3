//! The OpenAPI 3 document describing `/api/v1`, kept in `openapi.json` next to this file.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::http::state::AppState;

/// The document as served.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's route registrations, read from the sources that make them.
    const SOURCES: [&str; 13] = [
        include_str!("apps.rs"),
        include_str!("runs.rs"),
        include_str!("events.rs"),
        include_str!("functions.rs"),
        include_str!("subscriptions.rs"),
        include_str!("operations.rs"),
        include_str!("billing.rs"),
        include_str!("payments.rs"),
        include_str!("disputes.rs"),
        include_str!("reports.rs"),
        include_str!("webhooks.rs"),
        include_str!("openapi.rs"),
        include_str!("mod.rs"),
    ];

    /// `(path, method)` of every `/api/v1` route registration in `source`.
    fn routes(source: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for chunk in source.split(".route(").skip(1) {
            let Some(chunk) = chunk.trim_start().strip_prefix('"') else {
                continue;
            };
            let Some((path, rest)) = chunk.split_once('"') else {
                continue;
            };
            if !path.starts_with("/api/v1") {
                continue;
            }
            let call = rest.split(")\n").next().unwrap_or(rest);
            for method in ["get", "post", "put", "patch", "delete"] {
                if call.contains(&format!(" {method}(")) || call.contains(&format!(".{method}(")) {
                    found.push((path.to_owned(), method.to_owned()));
                }
            }
        }
        found
    }

    #[test]
    fn every_registered_route_is_described_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let routes: Vec<_> = SOURCES.iter().flat_map(|s| routes(s)).collect();
        assert!(routes.len() >= 12, "{routes:?}");
        for (path, method) in &routes {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is registered but not in openapi.json"
            );
        }
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            let operations = item.as_object().expect("path item").keys();
            // A path item may also hold shared `parameters`, a `summary` and the like.
            for method in operations
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
            {
                assert!(
                    routes.contains(&(path.clone(), method.clone())),
                    "openapi.json describes {method} {path}, which is not registered"
                );
            }
        }
    }

    /// The answers every route may give before its handler runs (access, `Host`, the
    /// wrong-token limit, failures) are described on every operation, and the body
    /// timeout and cross-site refusal on every write.
    #[test]
    fn every_operation_lists_the_answers_of_the_guards_in_front_of_it() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let operations = item
                .as_object()
                .expect("path item")
                .iter()
                .filter(|(k, _)| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()));
            for (method, operation) in operations {
                let mut expected = vec!["401", "421", "429", "500", "503"];
                if method != "get" {
                    expected.extend(["403", "408"]);
                }
                for code in expected {
                    let answer = &operation["responses"][code];
                    let name = answer["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/responses/"));
                    assert!(
                        name.is_some_and(|n| doc["components"]["responses"][n].is_object()),
                        "{method} {path} does not describe {code}: {answer}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_route_reader_sees_chained_methods() {
        let source = "Router::new()\n    .route(\"/api/v1/x\", get(a).post(b))\n    .route(\"/health\", get(h))\n";
        assert_eq!(
            routes(source),
            vec![
                ("/api/v1/x".to_owned(), "get".to_owned()),
                ("/api/v1/x".to_owned(), "post".to_owned())
            ]
        );
    }
}
