//! Who may use the dashboard and `/api/v1`, and which requests are served at all.
//!
//! Every request must name this server in `Host` (under `dev`, and under `serve` when
//! `PAYSTEPS_ALLOWED_HOSTS` is set), and a browser's write on behalf of another site is
//! refused on every route. With a dashboard token, API clients send it as a bearer token
//! and browsers sign in: each sign-in opens a session of its own (random id in an
//! HttpOnly, SameSite=Strict cookie; its hash, CSRF token and expiry in the database),
//! ended by signing out. Wrong tokens are limited per client address.

mod failures;
mod hosts;
pub mod page_headers;
mod proxies;
mod session;
mod signin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use self::failures::{Client, Failures};
pub use self::hosts::Hosts;
use self::hosts::Site;
pub use self::proxies::TrustedProxies;
pub use self::session::Session;
pub use self::signin::router;
use super::error::ApiError;
use super::state::AppState;
use crate::config::Secret;
use crate::store::{self, Store};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "paysteps_session";
/// The header carrying the CSRF token on cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The shortest dashboard token `serve` accepts.
pub const MIN_SERVE_TOKEN_CHARS: usize = 32;
/// How long a sign-in lasts unless configured (`PAYSTEPS_SESSION_HOURS`).
pub const DEFAULT_SESSION_HOURS: u64 = 12;

/// How the dashboard and `/api/v1` are guarded, and which `Host` names are served.
#[derive(Clone)]
pub struct Access {
    /// `None`: no credential (`dev` on loopback).
    token: Option<Arc<TokenAccess>>,
    hosts: Arc<Hosts>,
    secure_cookies: bool,
    session_ttl: Duration,
    failures: Arc<Failures>,
    proxies: Arc<TrustedProxies>,
    /// Required of `/metrics` as a bearer token when set.
    metrics_token: Option<Arc<Secret>>,
}

/// The token and what is derived from it.
struct TokenAccess {
    token: Secret,
    /// Stored with each session: a new token signs every browser out.
    tag: String,
}

impl Default for Access {
    fn default() -> Self {
        Access::open()
    }
}

impl Access {
    /// No credential; loopback names only, cookies without `Secure`.
    pub fn open() -> Access {
        Access {
            token: None,
            hosts: Arc::new(Hosts::loopback()),
            secure_cookies: false,
            session_ttl: Duration::from_secs(DEFAULT_SESSION_HOURS * 3600),
            failures: Arc::default(),
            proxies: Arc::default(),
            metrics_token: None,
        }
    }

    /// Requires `token` (bearer header or signed-in session); otherwise as [`Access::open`].
    pub fn token(token: &str) -> Access {
        Access {
            token: Some(Arc::new(TokenAccess {
                token: Secret::new(token),
                tag: derive(token, "paysteps dashboard session v2"),
            })),
            ..Access::open()
        }
    }

    /// Serves these `Host` names only.
    pub fn hosts(self, hosts: Hosts) -> Access {
        Access {
            hosts: Arc::new(hosts),
            ..self
        }
    }

    /// Marks the session cookie `Secure` (sent over HTTPS only).
    pub fn secure_cookies(self, secure: bool) -> Access {
        Access {
            secure_cookies: secure,
            ..self
        }
    }

    /// How long a sign-in lasts.
    pub fn session_ttl(self, ttl: Duration) -> Access {
        Access {
            session_ttl: ttl,
            ..self
        }
    }

    /// Believes `X-Forwarded-For` from these proxies when counting wrong tokens.
    pub fn trusted_proxies(self, proxies: TrustedProxies) -> Access {
        Access {
            proxies: Arc::new(proxies),
            ..self
        }
    }

    /// Requires `token` of `/metrics` as a bearer token; `None` or empty leaves it open.
    pub fn metrics_token(self, token: Option<&str>) -> Access {
        Access {
            metrics_token: token
                .filter(|t| !t.is_empty())
                .map(|t| Arc::new(Secret::new(t))),
            ..self
        }
    }

    /// The client a request comes from, for counting its wrong tokens.
    fn client(&self, connection: Option<&ConnectInfo<SocketAddr>>, headers: &HeaderMap) -> Client {
        Client::new(connection.map(|ConnectInfo(addr)| self.proxies.client(addr.ip(), headers)))
    }

    /// The answer refusing a `/metrics` request, if it is refused: never without a
    /// metrics token; with one, unless the request bears it (wrong tokens are limited per
    /// client as the dashboard's are).
    pub fn metrics_refusal(&self, request: &Request, now_ms: i64) -> Option<Response> {
        let token = self.metrics_token.as_ref()?;
        let client = self.client(request.extensions().get(), request.headers());
        if let Some(wait) = self.failures.blocked(client, now_ms) {
            return Some(too_many(
                wait,
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    "too many wrong tokens from this address; retry later",
                )
                .into_response(),
            ));
        }
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(given) if equal(given, token.expose()) => None,
            given => {
                if given.is_some() {
                    self.failures.record(client, now_ms);
                }
                let mut response = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "metrics require the metrics token: Authorization: Bearer <PAYSTEPS_METRICS_TOKEN>",
                )
                .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"paysteps metrics\""),
                );
                Some(response)
            }
        }
    }

    /// Whether a token is required (and the dashboard offers to sign out).
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    async fn identify(
        &self,
        store: &Store,
        headers: &HeaderMap,
        client: Client,
        now_ms: i64,
    ) -> Result<Identity, Refused> {
        let Some(access) = &self.token else {
            return Ok(Identity::Open);
        };
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self
                .check_token(access, bearer.trim(), client, now_ms)
                .map(|()| Identity::Bearer);
        }
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return Err(Refused::NoCredential);
        };
        session::find(store, id, &access.tag, now_ms)
            .await?
            .map(Identity::Session)
            .ok_or(Refused::NoCredential)
    }

    /// Compares a presented token, unless `client` has sent too many wrong ones lately.
    fn check_token(
        &self,
        access: &TokenAccess,
        given: &str,
        client: Client,
        now_ms: i64,
    ) -> Result<(), Refused> {
        if let Some(wait) = self.failures.blocked(client, now_ms) {
            return Err(Refused::TooMany(wait));
        }
        if equal(given, access.token.expose()) {
            Ok(())
        } else {
            self.failures.record(client, now_ms);
            Err(Refused::WrongToken)
        }
    }

    fn cookie(&self, value: &str, max_age_secs: u64) -> String {
        format!(
            "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }
}

/// The settings of `dev` and `serve` that concern access.
#[derive(Debug, Clone, clap::Args)]
pub struct AccessArgs {
    /// Host names (or addresses) this server answers to besides loopback and the bind
    /// address, comma-separated. `dev` always checks `Host`; `serve` only when this is set.
    #[arg(
        long = "allowed-hosts",
        env = "PAYSTEPS_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Hours a dashboard sign-in lasts.
    #[arg(
        long = "session-hours",
        env = "PAYSTEPS_SESSION_HOURS",
        default_value_t = DEFAULT_SESSION_HOURS,
        value_parser = clap::value_parser!(u64).range(1..=24 * 366)
    )]
    pub session_hours: u64,
    /// Session cookies without `Secure` under `serve`, for testing over plain HTTP.
    #[arg(
        long = "insecure-cookies",
        env = "PAYSTEPS_INSECURE_COOKIES",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub insecure_cookies: bool,
    /// Reverse proxies (addresses or networks such as 10.0.0.0/8, comma-separated) whose
    /// `X-Forwarded-For` names the client, so wrong tokens are counted per real client.
    #[arg(
        long = "trusted-proxies",
        env = "PAYSTEPS_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = proxies::parse_network
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Bearer token `/metrics` requires; unset, `/metrics` is open.
    #[arg(
        long = "metrics-token",
        env = "PAYSTEPS_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
}

/// Why access cannot be configured as asked.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// `serve` was given a token too short to resist guessing.
    #[error(
        "paysteps serve refuses to start: PAYSTEPS_DASHBOARD_TOKEN has {chars} characters, \
         it needs at least {MIN_SERVE_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)"
    )]
    ShortToken {
        /// The given token's length.
        chars: usize,
    },
}

impl AccessArgs {
    /// `dev`'s access (`access`, open or with a token) on `bound`: `Host` always checked,
    /// cookies without `Secure` (plain HTTP).
    pub fn dev(&self, access: Access, bound: SocketAddr) -> Access {
        let bound = bound.to_string();
        access
            .hosts(self.allowed_hosts(&bound))
            .session_ttl(self.session_ttl())
            .trusted_proxies(self.trusted_proxies())
            .metrics_token(self.metrics_token.as_deref())
    }

    /// `serve`'s access with `token`, listening on `bind`: `Host` checked only when
    /// `PAYSTEPS_ALLOWED_HOSTS` is set (a proxy may forward any name), `Secure` cookies
    /// unless `PAYSTEPS_INSECURE_COOKIES`.
    pub fn serve(&self, token: &str, bind: &str) -> Result<Access, AccessError> {
        let chars = token.chars().count();
        if chars < MIN_SERVE_TOKEN_CHARS {
            return Err(AccessError::ShortToken { chars });
        }
        let hosts = if self.allowed_hosts.iter().all(|h| h.trim().is_empty()) {
            Hosts::any()
        } else {
            self.allowed_hosts(bind)
        };
        Ok(Access::token(token)
            .hosts(hosts)
            .secure_cookies(!self.insecure_cookies)
            .session_ttl(self.session_ttl())
            .trusted_proxies(self.trusted_proxies())
            .metrics_token(self.metrics_token.as_deref()))
    }

    fn allowed_hosts(&self, bind: &str) -> Hosts {
        Hosts::loopback()
            .with([bind])
            .with(self.allowed_hosts.iter().map(|h| h.trim()))
    }

    fn trusted_proxies(&self) -> TrustedProxies {
        TrustedProxies::new(self.trusted_proxies.iter().copied())
    }

    fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_hours.saturating_mul(3600))
    }
}

enum Identity {
    Open,
    Bearer,
    Session(Session),
}

enum Refused {
    NoCredential,
    WrongToken,
    TooMany(Duration),
    Store(store::Error),
}

impl From<store::Error> for Refused {
    fn from(err: store::Error) -> Self {
        Refused::Store(err)
    }
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

fn writes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware for every route: refuses a `Host` this server does not answer to (421) and
/// a browser's write on behalf of another site (403), before anything else happens.
pub async fn screen(State(access): State<Access>, request: Request, next: Next) -> Response {
    if let Some(host) = hosts::authority(&request)
        && !access.hosts.allows(host)
    {
        let shown: String = host.chars().take(100).collect();
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            format!(
                "this server does not answer to the name {shown:?}; add it to PAYSTEPS_ALLOWED_HOSTS"
            ),
        )
        .into_response();
    }
    let refused = match hosts::site(request.headers()) {
        Site::Same => false,
        Site::Other => true,
        // A cross-site sign-in needs the token and a cross-site sign-out carries no
        // (SameSite=Strict) cookie: neither can do harm, and these are the forms our own
        // pages post, which some browsers send as `Origin: null` (see `Site::Hidden`).
        Site::Hidden => !matches!(request.uri().path(), "/signin" | "/signout"),
    };
    if writes(request.method()) && refused {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "a browser request from another site cannot change anything",
        )
        .into_response();
    }
    next.run(request).await
}

/// Wraps `router` so each of its routes requires the dashboard credential.
pub fn protect(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    router.route_layer(middleware::from_fn_with_state(state.clone(), guard))
}

async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let client = state
        .access
        .client(request.extensions().get(), request.headers());
    let now_ms = state.engine.clock().now_ms();
    let identity = state
        .access
        .identify(state.engine.store(), request.headers(), client, now_ms)
        .await;
    match identity {
        Ok(Identity::Open | Identity::Bearer) => next.run(request).await,
        Ok(Identity::Session(session)) => {
            let csrf = request
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok());
            if writes(request.method()) && !csrf.is_some_and(|t| equal(t, &session.csrf)) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_token_invalid",
                    "missing or wrong CSRF token (x-csrf-token)",
                )
                .into_response();
            }
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Err(Refused::TooMany(wait)) => too_many(
            wait,
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "too many wrong dashboard tokens from this address; retry later",
            )
            .into_response(),
        ),
        Err(Refused::Store(err)) => ApiError::from(err).into_response(),
        Err(Refused::NoCredential | Refused::WrongToken)
            if request.uri().path().starts_with("/api/") =>
        {
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
        Err(Refused::NoCredential | Refused::WrongToken) => Redirect::to("/signin").into_response(),
    }
}

/// `response` with `Retry-After` saying when the client may try again.
fn too_many(wait: Duration, mut response: Response) -> Response {
    let secs = wait.as_millis().div_ceil(1000).max(1);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&secs.to_string()).expect("digits are a header value"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(allowed: &[&str], insecure: bool) -> AccessArgs {
        AccessArgs {
            allowed_hosts: allowed.iter().map(|h| (*h).to_owned()).collect(),
            session_hours: 12,
            insecure_cookies: insecure,
            trusted_proxies: Vec::new(),
            metrics_token: None,
        }
    }

    #[test]
    fn serve_needs_a_long_token_and_sets_secure_cookies() {
        let short = args(&[], false).serve("0123456789abcdef0123456789abcde", "0.0.0.0:8288");
        assert!(matches!(short, Err(AccessError::ShortToken { chars: 31 })));
        let message = short.err().expect("refused").to_string();
        assert!(message.contains("PAYSTEPS_DASHBOARD_TOKEN"), "{message}");
        assert!(!message.contains("0123456789"), "{message}");

        let token = "0123456789abcdef0123456789abcdef";
        let serve = args(&[], false)
            .serve(token, "0.0.0.0:8288")
            .expect("serve");
        assert!(serve.cookie("x", 1).ends_with("; Secure"));
        assert!(
            serve.hosts.allows("anything.example"),
            "unchecked by default"
        );
        let plain = args(&[], true).serve(token, "0.0.0.0:8288").expect("serve");
        assert!(!plain.cookie("x", 1).contains("Secure"));
        let listed = args(&["dash.example"], false)
            .serve(token, "0.0.0.0:8288")
            .expect("serve");
        assert!(listed.hosts.allows("dash.example"));
        assert!(listed.hosts.allows("10.1.2.3:8288"), "bound everywhere");
        assert!(!listed.hosts.allows("evil.example"));
    }

    #[test]
    fn dev_checks_the_host_and_cookies_are_strict() {
        let bound: SocketAddr = "127.0.0.1:8288".parse().unwrap();
        let dev = args(&["tunnel.example"], false).dev(Access::open(), bound);
        assert!(dev.hosts.allows("localhost:8288"));
        assert!(dev.hosts.allows("tunnel.example"));
        assert!(!dev.hosts.allows("evil.example"));
        let cookie = dev.cookie("abc", 43200);
        assert_eq!(
            cookie,
            "paysteps_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"
        );
    }

    #[test]
    fn the_session_tag_changes_with_the_token_and_hides_it() {
        let (a, b) = (Access::token("s3cret"), Access::token("s3cret2"));
        let (a, b) = (a.token.expect("token"), b.token.expect("token"));
        assert_ne!(a.tag, b.tag);
        assert!(!a.tag.contains("s3cret"));
    }
}
