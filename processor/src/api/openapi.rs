//! `GET /openapi.json`: the OpenAPI 3 document of the ingest and processor HTTP APIs.
//!
//! The document is `docs/openapi.json` in the repository, built into the binary; it is
//! served without a token, since it holds no data.

use actix_web::{http::header, web, HttpResponse};

/// The document, as written in `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi));
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(OPENAPI_JSON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every route the processor serves, all with GET.
    const PROCESSOR_ROUTES: [&str; 9] = [
        "/",
        "/dashboard/app.css",
        "/dashboard/app.js",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/v1/messages",
        "/v1/messages/{msg_id}",
        "/v1/stats",
    ];

    #[test]
    fn the_document_parses_and_lists_every_processor_route() {
        let document: Value = serde_json::from_str(OPENAPI_JSON).unwrap();

        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        let paths = document["paths"].as_object().unwrap();
        for route in PROCESSOR_ROUTES {
            assert!(
                paths.get(route).is_some_and(|p| p["get"].is_object()),
                "GET {route} is not documented"
            );
        }
    }

    #[test]
    fn the_document_lists_ingest_routes_and_responses() {
        let document: Value = serde_json::from_str(OPENAPI_JSON).unwrap();

        let dlr = &document["paths"]["/dlr"];
        for method in ["get", "post"] {
            let responses = dlr[method]["responses"].as_object().unwrap();
            let codes: Vec<&str> = responses.keys().map(String::as_str).collect();
            assert!(
                codes.contains(&"200") && codes.contains(&"400"),
                "{method}: {codes:?}"
            );
        }
        for code in ["413", "415", "503"] {
            assert!(
                dlr["post"]["responses"][code].is_object(),
                "POST /dlr {code}"
            );
        }
    }
}
