//! Who may use the dashboard and `/api/v1`: under `serve`, a bearer token for API
//! clients, or a sign-in page that sets an HttpOnly, SameSite=Strict session cookie for
//! browsers. Requests that change state are refused when they come from another site,
//! and cookie-authenticated ones must also carry the page's CSRF token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;
use crate::config::Secret;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "paysteps_session";
/// The header carrying the CSRF token on cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the dashboard and `/api/v1` are guarded.
#[derive(Clone, Default)]
pub enum Access {
    /// No credential (`dev` on loopback).
    #[default]
    Open,
    /// The dashboard token is required.
    Token(Arc<TokenAccess>),
}

/// The token and the values derived from it.
pub struct TokenAccess {
    token: Secret,
    /// The session cookie's value: derived from the token, so changing the token signs
    /// every browser out.
    session: String,
    csrf: String,
}

impl Access {
    /// Requires `token` (bearer header or signed-in session).
    pub fn token(token: &str) -> Access {
        Access::Token(Arc::new(TokenAccess {
            token: Secret::new(token),
            session: derive(token, "paysteps dashboard session v1"),
            csrf: derive(token, "paysteps dashboard csrf v1"),
        }))
    }

    /// The CSRF token the dashboard page sends back on writes (empty when open).
    pub fn csrf_token(&self) -> &str {
        match self {
            Access::Open => "",
            Access::Token(t) => &t.csrf,
        }
    }

    fn credential(&self, headers: &HeaderMap) -> Credential {
        let Access::Token(access) = self else {
            return Credential::Open;
        };
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return if equal(bearer.trim(), access.token.expose()) {
                Credential::Bearer
            } else {
                Credential::None
            };
        }
        match cookie(headers, SESSION_COOKIE) {
            Some(session) if equal(session, &access.session) => Credential::Session,
            _ => Credential::None,
        }
    }
}

enum Credential {
    Open,
    Bearer,
    Session,
    None,
}

fn derive(token: &str, purpose: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(purpose.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// True when the browser says the request comes from another site: `Sec-Fetch-Site`
/// other than same-origin/none, or an `Origin` whose host is not ours. Clients that
/// send neither (the CLI, curl) are not browsers acting for another site.
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    origin_host != host
}

/// Wraps `router` so each of its routes requires the dashboard credential.
pub fn protect(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    router.route_layer(middleware::from_fn_with_state(state.clone(), guard))
}

async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if writes && cross_site(headers) {
        return forbidden("cross-site requests cannot change anything");
    }
    match state.access.credential(headers) {
        Credential::Open | Credential::Bearer => next.run(request).await,
        Credential::Session => {
            let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if writes && !csrf.is_some_and(|t| equal(t, state.access.csrf_token())) {
                return forbidden("missing or wrong CSRF token (x-csrf-token)");
            }
            next.run(request).await
        }
        Credential::None if request.uri().path().starts_with("/api/") => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API requires the dashboard token: Authorization: Bearer <PAYSTEPS_DASHBOARD_TOKEN>",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"paysteps\""),
            );
            response
        }
        Credential::None => Redirect::to("/signin").into_response(),
    }
}

fn forbidden(message: &str) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response()
}

/// `/signin` and `/signout`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
}

const SIGNIN_HTML: &str = include_str!("signin.html");

fn signin_html(message: &str) -> Html<String> {
    Html(SIGNIN_HTML.replace("{{message}}", message))
}

async fn signin_page(State(state): State<AppState>) -> Response {
    match state.access {
        Access::Open => Redirect::to("/").into_response(),
        Access::Token(_) => signin_html("").into_response(),
    }
}

#[derive(Deserialize)]
struct SigninForm {
    token: String,
}

async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SigninForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Access::Token(access) = &state.access else {
        return Redirect::to("/").into_response();
    };
    if cross_site(&headers) {
        return forbidden("cross-site sign-in refused");
    }
    let Ok(Form(form)) = form else {
        return (
            StatusCode::BAD_REQUEST,
            signin_html("<p class=\"error\" data-testid=\"signin-error\">Enter the token.</p>"),
        )
            .into_response();
    };
    if !equal(form.token.trim(), access.token.expose()) {
        return (
            StatusCode::UNAUTHORIZED,
            signin_html(
                "<p class=\"error\" data-testid=\"signin-error\">That is not the dashboard token.</p>",
            ),
        )
            .into_response();
    }
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes() == b"https");
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{}",
        access.session,
        if secure { "; Secure" } else { "" }
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn signout(headers: HeaderMap) -> Response {
    if cross_site(&headers) {
        return forbidden("cross-site sign-out refused");
    }
    let mut response = Redirect::to("/signin").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("paysteps_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn cross_site_requests_are_told_apart_from_same_origin_ones() {
        assert!(
            !cross_site(&headers(&[])),
            "no browser hints: not a browser"
        );
        assert!(!cross_site(&headers(&[
            ("host", "dash.example:8288"),
            ("origin", "http://dash.example:8288"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(cross_site(&headers(&[
            ("host", "dash.example:8288"),
            ("origin", "http://evil.example"),
        ])));
        assert!(cross_site(&headers(&[
            ("host", "dash.example:8288"),
            ("origin", "null"),
        ])));
    }

    #[test]
    fn credentials_come_from_the_bearer_header_or_the_session_cookie() {
        let access = Access::token("s3cret");
        let Access::Token(inner) = &access else {
            unreachable!()
        };
        let session = format!("a=b; {SESSION_COOKIE}={}", inner.session);
        assert!(matches!(
            access.credential(&headers(&[("authorization", "Bearer s3cret")])),
            Credential::Bearer
        ));
        assert!(matches!(
            access.credential(&headers(&[("authorization", "Bearer s3cre")])),
            Credential::None
        ));
        assert!(matches!(
            access.credential(&headers(&[("cookie", &session)])),
            Credential::Session
        ));
        assert!(matches!(
            access.credential(&headers(&[("cookie", "paysteps_session=s3cret")])),
            Credential::None
        ));
        assert!(matches!(
            Access::Open.credential(&headers(&[])),
            Credential::Open
        ));
        assert_ne!(inner.session, inner.csrf);
        assert!(!inner.session.contains("s3cret"));
        assert_eq!(Access::Open.csrf_token(), "");
    }
}
