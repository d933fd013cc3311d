//! The dashboard: one HTML page with its stylesheet and script, built into the binary.
//!
//! The page needs no build step and loads nothing from elsewhere (the Content Security
//! Policy forbids it). Its shell is served without a token and shows only a login form;
//! the token a user types is kept in the tab's `sessionStorage` and sent as a bearer
//! token with every `/v1` call, so all data stays behind `API_TOKENS`. The page asks for
//! masked numbers by default and refreshes its figures every 15 seconds.

use actix_web::{http::header, web, HttpResponse};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");

/// Only the page's own files may be loaded; scripts and styles inline in HTML may not.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Registers `/` and the page's assets under `/dashboard/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/dashboard/app.css", web::get().to(stylesheet))
        .route("/dashboard/app.js", web::get().to(script));
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
