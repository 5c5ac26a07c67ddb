//! The admin API: the `portico user …` and `portico cluster status` commands over
//! HTTPS, as JSON, for tools that manage accounts from elsewhere.
//!
//! Every call needs `Authorization: Bearer <[http] admin_token>`, compared in constant
//! time; without a token configured the API does not exist (404). The listener is TLS
//! only, so a token never crosses the network in the clear. Requests run the same
//! [`crate::admin::execute`] as the admin socket.
//!
//! | call | body | answer |
//! |---|---|---|
//! | `GET /api/v1/users` | | `[UserSummary]` |
//! | `POST /api/v1/users` | `{address, password, site?, node?}` | 201 `{done}` |
//! | `DELETE /api/v1/users/{address}` | | `{done}` |
//! | `PUT /api/v1/users/{address}/password` | `{password}` | `{done}` |
//! | `PATCH /api/v1/users/{address}` | `{imap_enabled?, pop3_enabled?, pop3_delete_mode?, storage_limit?}` | `{done}` |
//! | `GET /api/v1/status` | | `{node, cluster: ClusterReport}` |
//!
//! Errors are `{"error": "…"}`: 400 for a bad body or a refused change, 401 for a
//! missing or wrong token, 404 for an unknown user, 503 when the directory cannot take
//! changes.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use blake2::{Blake2b512, Digest};
use portico_store::Pop3DeleteMode;
use serde::{Deserialize, Serialize};

use super::{HttpState, json_error};
use crate::admin::{AdminRequest, AdminResponse, ClusterReport, execute};
use crate::auth::hash_password;

pub(super) fn routes(config: &mut web::ServiceConfig) {
    config
        .service(list_users)
        .service(add_user)
        .service(delete_user)
        .service(set_password)
        .service(set_user)
        .service(status);
}

/// Whether the request carries `Authorization: Bearer <token>`.
pub(super) fn bears_token(request: &HttpRequest, token: &str) -> bool {
    request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, credentials) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("Bearer")
                .then_some(credentials.trim())
        })
        .is_some_and(|given| same_secret(given, token.trim()))
}

/// The answer to send when the request does not carry the configured token.
fn refusal(state: &HttpState, request: &HttpRequest) -> Option<HttpResponse> {
    let config = state.live.current();
    let Some(token) = config.http.admin_token.as_deref() else {
        return Some(json_error(
            StatusCode::NOT_FOUND,
            "the admin API is not enabled",
        ));
    };
    (!bears_token(request, token)).then(|| {
        HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer realm=\"portico admin\""))
            .json(serde_json::json!({"error": "a valid bearer token is required"}))
    })
}

/// Compares two secrets in time that does not depend on where they differ: both are
/// hashed to the same length first, then every byte is compared.
fn same_secret(given: &str, expected: &str) -> bool {
    let given = Blake2b512::digest(given.as_bytes());
    let expected = Blake2b512::digest(expected.as_bytes());
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |differ, (a, b)| differ | (a ^ b))
        == 0
}

#[derive(Serialize)]
struct Done {
    done: String,
}

/// The HTTP answer for what the admin request answered.
fn answer(response: AdminResponse, success: StatusCode) -> HttpResponse {
    match response {
        AdminResponse::Done(done) => HttpResponse::build(success).json(Done { done }),
        AdminResponse::Users(users) => HttpResponse::Ok().json(users),
        AdminResponse::Queue(queue) => HttpResponse::Ok().json(queue),
        AdminResponse::Status(report) => HttpResponse::Ok().json(report),
        AdminResponse::Failed(why) => {
            let code = if why.starts_with("no such user") {
                StatusCode::NOT_FOUND
            } else if why.contains("no quorum") || why.contains("unreachable") {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            };
            json_error(code, &why)
        }
    }
}

async fn run(state: &HttpState, request: AdminRequest, success: StatusCode) -> HttpResponse {
    answer(execute(&state.admin, request).await, success)
}

/// The JSON body, read only once the token has been checked; else the 400 to send.
fn parsed<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<HttpResponse>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(json_error(
            StatusCode::BAD_REQUEST,
            &format!("bad JSON body: {e}"),
        ))
    })
}

/// An argon2 hash of `password`, made off the async threads; else the answer to send.
async fn hashed(password: String) -> Result<String, Box<HttpResponse>> {
    if password.is_empty() {
        return Err(Box::new(json_error(
            StatusCode::BAD_REQUEST,
            "the password is empty",
        )));
    }
    match actix_web::rt::task::spawn_blocking(move || hash_password(&password)).await {
        Ok(Ok(hash)) => Ok(hash),
        _ => Err(Box::new(json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the password could not be hashed",
        ))),
    }
}

#[get("/api/v1/users")]
async fn list_users(state: web::Data<HttpState>, request: HttpRequest) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    run(&state, AdminRequest::ListUsers, StatusCode::OK).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    address: String,
    password: String,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    node: Option<String>,
}

#[post("/api/v1/users")]
async fn add_user(
    state: web::Data<HttpState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    let NewUser {
        address,
        password,
        site,
        node,
    } = match parsed(&body) {
        Ok(user) => user,
        Err(refused) => return *refused,
    };
    let password_hash = match hashed(password).await {
        Ok(hash) => hash,
        Err(refused) => return *refused,
    };
    let add = AdminRequest::AddUser {
        address,
        password_hash,
        site,
        node,
    };
    run(&state, add, StatusCode::CREATED).await
}

#[delete("/api/v1/users/{address}")]
async fn delete_user(
    state: web::Data<HttpState>,
    request: HttpRequest,
    address: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    let address = address.into_inner();
    run(&state, AdminRequest::DeleteUser { address }, StatusCode::OK).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

#[put("/api/v1/users/{address}/password")]
async fn set_password(
    state: web::Data<HttpState>,
    request: HttpRequest,
    address: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    let password = match parsed::<NewPassword>(&body) {
        Ok(new) => new.password,
        Err(refused) => return *refused,
    };
    let password_hash = match hashed(password).await {
        Ok(hash) => hash,
        Err(refused) => return *refused,
    };
    let change = AdminRequest::SetPassword {
        address: address.into_inner(),
        password_hash,
    };
    run(&state, change, StatusCode::OK).await
}

/// The account switches to change; absent ones stay. `storage_limit`: bytes, or
/// `null` for none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Switches {
    #[serde(default)]
    imap_enabled: Option<bool>,
    #[serde(default)]
    pop3_enabled: Option<bool>,
    #[serde(default)]
    pop3_delete_mode: Option<Pop3DeleteMode>,
    #[serde(default, with = "present")]
    storage_limit: Option<Option<u64>>,
}

/// `storage_limit` absent (no change), `null` (no limit) or a number of bytes.
mod present {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<u64>>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(Some)
    }
}

#[patch("/api/v1/users/{address}")]
async fn set_user(
    state: web::Data<HttpState>,
    request: HttpRequest,
    address: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    let switches: Switches = match parsed(&body) {
        Ok(switches) => switches,
        Err(refused) => return *refused,
    };
    let change = AdminRequest::SetUser {
        address: address.into_inner(),
        pop3_enabled: switches.pop3_enabled,
        imap_enabled: switches.imap_enabled,
        pop3_delete_mode: switches.pop3_delete_mode,
        storage_limit: switches.storage_limit,
    };
    run(&state, change, StatusCode::OK).await
}

#[derive(Serialize)]
struct Status {
    node: String,
    cluster: ClusterReport,
}

#[get("/api/v1/status")]
async fn status(state: web::Data<HttpState>, request: HttpRequest) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    match execute(&state.admin, AdminRequest::ClusterStatus).await {
        AdminResponse::Status(cluster) => HttpResponse::Ok().json(Status {
            node: state.node.node_name.clone(),
            cluster,
        }),
        other => answer(other, StatusCode::OK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        let token = "0123456789abcdef0123456789abcdef";
        assert!(same_secret(token, token));
        assert!(!same_secret("0123456789abcdef0123456789abcdeF", token));
        assert!(!same_secret("", token));
        assert!(!same_secret(&format!("{token}x"), token));
    }
}
