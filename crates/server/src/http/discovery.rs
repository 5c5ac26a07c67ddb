//! How mail clients configure themselves from an address alone: Thunderbird's
//! autoconfig (`/.well-known/autoconfig/mail/config-v1.1.xml`, and
//! `/mail/config-v1.1.xml` where `autoconfig.<domain>` points here) and Microsoft's
//! Autodiscover POX (`POST /autodiscover/autodiscover.xml`, either spelling). A client
//! from `internal_networks` gets the internal settings, any other the external ones,
//! as the configuration says now (`portico reload` changes them at once).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use futures::StreamExt;
use portico_web::{ClientSettings, autoconfig, autodiscover};
use serde::Deserialize;

use super::HttpState;

pub(super) fn routes(config: &mut web::ServiceConfig) {
    config
        .service(autoconfig_well_known)
        .service(autoconfig_host)
        .service(autodiscover_lower)
        .service(autodiscover_upper);
}

/// The settings for the client that sent `request`.
fn settings_for(state: &HttpState, request: &HttpRequest) -> ClientSettings {
    let config = state.live.current();
    let internal = request
        .peer_addr()
        .is_some_and(|peer| config.is_internal_client(peer.ip()));
    ClientSettings::for_client(&config, internal)
}

#[derive(Deserialize)]
struct AutoconfigQuery {
    emailaddress: Option<String>,
}

fn plain(status: StatusCode, text: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{text}\n"))
}

fn autoconfig_answer(
    state: &HttpState,
    request: &HttpRequest,
    query: &AutoconfigQuery,
) -> HttpResponse {
    let Some(address) = query.emailaddress.as_deref() else {
        return plain(
            StatusCode::BAD_REQUEST,
            "the emailaddress parameter is missing",
        );
    };
    let Some(domain) = autoconfig::domain_of(address) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "emailaddress is not a mail address",
        );
    };
    if !state.live.current().is_local_domain(domain) {
        return plain(
            StatusCode::NOT_FOUND,
            "this server does not serve that domain",
        );
    }
    match autoconfig::document(domain, &settings_for(state, request)) {
        Ok(document) => HttpResponse::Ok()
            .content_type("application/xml; charset=utf-8")
            .insert_header(("Cache-Control", "no-cache"))
            .body(document),
        // Thunderbird then tries its other sources.
        Err(e) => plain(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

#[get("/.well-known/autoconfig/mail/config-v1.1.xml")]
async fn autoconfig_well_known(
    state: web::Data<HttpState>,
    request: HttpRequest,
    query: web::Query<AutoconfigQuery>,
) -> HttpResponse {
    autoconfig_answer(&state, &request, &query)
}

#[get("/mail/config-v1.1.xml")]
async fn autoconfig_host(
    state: web::Data<HttpState>,
    request: HttpRequest,
    query: web::Query<AutoconfigQuery>,
) -> HttpResponse {
    autoconfig_answer(&state, &request, &query)
}

/// Reads the body, but no more than one byte past `limit`: a longer one is refused by
/// the parser as too long, with a 400 like every other bad request.
async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| format!("bad request body: {e}"))?;
        let room = (limit + 1).saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() > limit {
            break;
        }
    }
    Ok(body)
}

async fn autodiscover_answer(
    state: &HttpState,
    request: &HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let limit = autodiscover::DEFAULT_MAX_REQUEST_LEN;
    let body = match read_limited(payload, limit).await {
        Ok(body) => body,
        Err(why) => return plain(StatusCode::BAD_REQUEST, &why),
    };
    let parsed = match autodiscover::parse_request(&body, limit) {
        Ok(parsed) => parsed,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("bad Autodiscover request: {e}"),
            );
        }
    };
    let xml = |body: String| {
        HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body(body)
    };
    if !state.live.current().is_local_domain(parsed.domain()) {
        return xml(autodiscover::error_response(
            crate::smtp_time::unix_now().max(0) as u64,
        ));
    }
    xml(autodiscover::response(
        &parsed.email_address,
        &settings_for(state, request),
    ))
}

#[post("/autodiscover/autodiscover.xml")]
async fn autodiscover_lower(
    state: web::Data<HttpState>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    autodiscover_answer(&state, &request, payload).await
}

#[post("/Autodiscover/Autodiscover.xml")]
async fn autodiscover_upper(
    state: web::Data<HttpState>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    autodiscover_answer(&state, &request, payload).await
}
