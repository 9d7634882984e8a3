//! The sign-in page, signing in (a session of its own, unless the client has sent too many
//! wrong tokens lately) and signing out (the session ends).

use std::net::SocketAddr;

use axum::extract::State;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;

use super::{Refused, SESSION_COOKIE, cookie, page_headers, session, too_many};
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// `/signin`, `/signout` and the sign-in page's stylesheet, with the page headers.
pub fn router() -> Router<AppState> {
    page_headers::wrap(
        Router::new()
            .route("/signin", get(signin_page).post(signin))
            .route("/signout", post(signout))
            .route("/assets/signin.css", get(signin_style)),
    )
}

const SIGNIN_HTML: &str = include_str!("../signin.html");

fn signin_html(message: &str) -> Html<String> {
    Html(SIGNIN_HTML.replace("{{message}}", message))
}

fn signin_error(status: StatusCode, message: &str) -> Response {
    let html = format!("<p class=\"error\" data-testid=\"signin-error\">{message}</p>");
    (status, signin_html(&html)).into_response()
}

async fn signin_style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../signin.css"),
    )
        .into_response()
}

async fn signin_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(access) = &state.access.token else {
        return Redirect::to("/").into_response();
    };
    let now_ms = state.engine.clock().now_ms();
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Ok(Some(_)) = session::find(state.engine.store(), id, &access.tag, now_ms).await
    {
        return Redirect::to("/").into_response();
    }
    signin_html("").into_response()
}

#[derive(Deserialize)]
struct SigninForm {
    token: String,
}

async fn signin(
    State(state): State<AppState>,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<SigninForm>, FormRejection>,
) -> Response {
    let Some(access) = &state.access.token else {
        return Redirect::to("/").into_response();
    };
    let Ok(Form(form)) = form else {
        return signin_error(StatusCode::BAD_REQUEST, "Enter the token.");
    };
    let client = state
        .access
        .client(connection.as_ref().map(|Extension(c)| c), &headers);
    let now_ms = state.engine.clock().now_ms();
    match state
        .access
        .check_token(access, form.token.trim(), client, now_ms)
    {
        Ok(()) => {}
        Err(Refused::TooMany(wait)) => {
            return too_many(
                wait,
                signin_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many wrong tokens from this address. Try again in a minute.",
                ),
            );
        }
        Err(_) => {
            return signin_error(StatusCode::UNAUTHORIZED, "That is not the dashboard token.");
        }
    }
    let opened = match session::open(
        state.engine.store(),
        &access.tag,
        now_ms,
        state.access.session_ttl,
    )
    .await
    {
        Ok(opened) => opened,
        Err(err) => return ApiError::from(err).into_response(),
    };
    let cookie = state
        .access
        .cookie(&opened.id, state.access.session_ttl.as_secs());
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("hex and attributes are a header value"),
    );
    response
}

async fn signout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Err(err) = session::close(state.engine.store(), id).await
    {
        return ApiError::from(err).into_response();
    }
    let mut response = Redirect::to("/signin").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&state.access.cookie("", 0)).expect("attributes are a header value"),
    );
    response
}
