//! The "Settings for POP or IMAP access" page (Exchange's Outlook Web App page, without
//! the rest of Outlook Web App): a user signs in with address and password and reads
//! the server names, ports and encryption to put in a mail client, for inside and
//! outside the network, which protocols the account may use, and where its mailbox is.
//!
//! Sign-in goes through the node's authenticator: the same password check, throttling
//! of failing addresses and refused names (anonymous, guest, administrator) as POP3
//! and IMAP. A session is a signed, expiring cookie (`Secure`, `HttpOnly`,
//! `SameSite=Strict`, `__Host-` prefixed); every form carries a CSRF token bound to
//! the session, or before sign-in to a pre-session cookie. Signing out revokes the
//! session here, so a copied cookie stops working too.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, get, post, web};
use portico_web::ClientSettings;
use portico_web::page::{self, SettingsView};
use portico_web::token::{self, CsrfScope, PRE_SESSION_COOKIE, SESSION_COOKIE, Session, TokenKey};
use serde::Deserialize;

use super::HttpState;
use crate::auth::{LoginError, Protocol};
use crate::smtp_time::unix_now;

/// Session ids signed out before they expire, with when they would have expired.
#[derive(Default)]
pub struct Revoked(Mutex<HashMap<String, u64>>);

impl Revoked {
    fn revoke(&self, session: &Session) {
        let now = now();
        let mut revoked = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        revoked.retain(|_, expires| *expires > now);
        revoked.insert(session.id.clone(), session.expires);
    }

    fn contains(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(id)
    }
}

fn now() -> u64 {
    u64::try_from(unix_now()).unwrap_or(0)
}

pub(super) fn routes(config: &mut web::ServiceConfig) {
    config
        .service(root)
        .service(settings)
        .service(sign_in)
        .service(sign_out);
}

/// Headers every page gets: no caching, no framing, no sniffing, no script.
fn page(status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", page::content_security_policy()))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"));
    response
}

fn cookie(name: &'static str, value: String, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::seconds(max_age_secs))
        .finish()
}

fn removal(name: &'static str) -> Cookie<'static> {
    cookie(name, String::new(), 0)
}

fn see_settings() -> HttpResponseBuilder {
    let mut response = HttpResponse::SeeOther();
    response.insert_header(("Location", page::SETTINGS_PATH));
    response
}

/// The signed-in session the request's cookie stands for, if any.
fn session(state: &HttpState, request: &HttpRequest) -> Option<Session> {
    let value = request.cookie(SESSION_COOKIE)?;
    let session = token::verify_session(&state.tokens, value.value(), now())?;
    (!state.revoked.contains(&session.id)).then_some(session)
}

#[get("/")]
async fn root() -> HttpResponse {
    see_settings().finish()
}

#[get("/settings")]
async fn settings(state: web::Data<HttpState>, request: HttpRequest) -> HttpResponse {
    match session(&state, &request) {
        Some(session) => settings_page(&state, &session),
        None => sign_in_form(&state, &request, StatusCode::OK, None, ""),
    }
}

/// The sign-in form, with a pre-session cookie for its CSRF token (a new one when the
/// browser has none).
fn sign_in_form(
    state: &HttpState,
    request: &HttpRequest,
    status: StatusCode,
    error: Option<&str>,
    address: &str,
) -> HttpResponse {
    let existing = request
        .cookie(PRE_SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|value| !value.is_empty() && value.len() <= 64);
    let (pre_session, fresh) = match existing {
        Some(value) => (value, false),
        None => match token::new_pre_session_id() {
            Ok(value) => (value, true),
            Err(_) => return page(StatusCode::SERVICE_UNAVAILABLE).body("Try again later."),
        },
    };
    let csrf = token::csrf_for(&state.tokens, CsrfScope::PreSession(&pre_session));
    let mut response = page(status);
    if fresh {
        let lifetime = state.live.current().http.session_lifetime_secs;
        response.cookie(cookie(
            PRE_SESSION_COOKIE,
            pre_session,
            i64::try_from(lifetime).unwrap_or(i64::MAX),
        ));
    }
    response.body(page::sign_in(&csrf, error, address))
}

fn settings_page(state: &HttpState, session: &Session) -> HttpResponse {
    let config = state.live.current();
    let record = match state.node.accounts.record(&session.address) {
        Ok(Some(record)) => record,
        // Deleted since signing in.
        Ok(None) => {
            return see_settings().cookie(removal(SESSION_COOKIE)).finish();
        }
        Err(e) => {
            tracing::error!(error = %e, "settings page: account lookup failed");
            return page(StatusCode::SERVICE_UNAVAILABLE)
                .body("The account directory is unavailable; try again later.");
        }
    };
    let fields = record.fields();
    let home_node = record.home().to_string();
    let view = SettingsView {
        address: session.address.clone(),
        internal: ClientSettings::for_client(&config, true),
        external: ClientSettings::for_client(&config, false),
        imap_enabled: fields.imap_enabled && config.imap.enabled,
        pop3_enabled: fields.pop3_enabled && config.pop3.enabled,
        smtp_enabled: config.smtp.enabled,
        home_site: config
            .find_node(&home_node)
            .map(|node| node.site.clone())
            .unwrap_or_default(),
        home_node,
    };
    let csrf = token::csrf_for(&state.tokens, CsrfScope::Session(&session.id));
    page(StatusCode::OK).body(page::settings(&view, &csrf))
}

/// Missing fields are empty, so a form without its CSRF token is refused as a forged
/// one (403), not as a malformed request.
#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

#[post("/settings/sign-in")]
async fn sign_in(
    state: web::Data<HttpState>,
    request: HttpRequest,
    form: web::Form<SignInForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let pre_session = request
        .cookie(PRE_SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    if !token::verify_csrf(
        &state.tokens,
        CsrfScope::PreSession(&pre_session),
        &form.csrf,
    ) {
        return sign_in_form(
            &state,
            &request,
            StatusCode::FORBIDDEN,
            Some("The form had expired or did not come from this page. Sign in again."),
            "",
        );
    }
    let Some(client) = request.peer_addr().map(|peer| peer.ip()) else {
        return page(StatusCode::BAD_REQUEST).body("No client address.");
    };
    let address = form.address.trim();
    let outcome = state
        .node
        .auth
        .login(address, &form.password, client, Protocol::Web)
        .await;
    let counted = match &outcome {
        Ok(_) => crate::metrics::LoginResult::Success,
        Err(error) => (*error).into(),
    };
    crate::metrics::count_login(crate::metrics::Protocol::Web, counted);
    let signed_in = match outcome {
        Ok(signed_in) => signed_in,
        Err(error) => {
            let (status, text) = match error {
                LoginError::Throttled => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed sign-ins from your address. Try again later.",
                ),
                LoginError::Unavailable | LoginError::TooManyConnections => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server cannot check your password now. Try again later.",
                ),
                LoginError::BadCredentials | LoginError::ProtocolDisabled => (
                    StatusCode::UNAUTHORIZED,
                    "The address or the password is not right.",
                ),
            };
            return sign_in_form(&state, &request, status, Some(text), address);
        }
    };
    let lifetime = state.live.current().http.session_lifetime_secs;
    let address = signed_in.address().to_string();
    let Ok(session) = token::issue_session(&state.tokens, &address, now() + lifetime) else {
        return page(StatusCode::SERVICE_UNAVAILABLE).body("Try again later.");
    };
    tracing::info!(user = %address, %client, "signed in to the settings page");
    see_settings()
        .cookie(cookie(
            SESSION_COOKIE,
            session,
            i64::try_from(lifetime).unwrap_or(i64::MAX),
        ))
        .cookie(removal(PRE_SESSION_COOKIE))
        .finish()
}

#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

#[post("/settings/sign-out")]
async fn sign_out(
    state: web::Data<HttpState>,
    request: HttpRequest,
    form: web::Form<SignOutForm>,
) -> HttpResponse {
    let Some(session) = session(&state, &request) else {
        return see_settings().cookie(removal(SESSION_COOKIE)).finish();
    };
    if !token::verify_csrf(&state.tokens, CsrfScope::Session(&session.id), &form.csrf) {
        return page(StatusCode::FORBIDDEN)
            .body("The form did not come from this page; you are still signed in.");
    }
    state.revoked.revoke(&session);
    tracing::info!(user = %session.address, "signed out of the settings page");
    see_settings().cookie(removal(SESSION_COOKIE)).finish()
}

/// The node's key for session and CSRF tokens: kept in the data directory (readable by
/// the node's user only), so a restart does not sign everyone out.
pub fn load_or_make_key(data_dir: &std::path::Path) -> anyhow::Result<TokenKey> {
    use anyhow::Context;
    let path = data_dir.join("http-session.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes: [u8; token::KEY_LEN] = bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} is not a session key", path.display()))?;
            Ok(TokenKey::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = TokenKey::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
            // New files are the node user's only (`private::restrict_new_files`).
            std::fs::write(&path, key.to_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
