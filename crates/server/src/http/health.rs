//! `/healthz` (the process answers) and `/readyz` (it can serve mail: the store is
//! open and the account directory has a leader and a replica here), for load
//! balancers and orchestrators, both plain text, 200 or 503; and `/metrics`, the
//! node's counters in Prometheus text format ([`crate::metrics`]), for
//! `[http] metrics_networks` or with the admin API's bearer token (403 otherwise).

use actix_web::{HttpRequest, HttpResponse, get, web};

use super::HttpState;

pub(super) fn routes(config: &mut web::ServiceConfig) {
    config.service(healthz).service(readyz).service(metrics);
}

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

#[get("/readyz")]
async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    let (ready, why) = match state.admin.cluster.not_ready() {
        None => (true, "ready".to_string()),
        Some(why) => (false, why),
    };
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response
        .content_type("text/plain; charset=utf-8")
        .body(format!("{why}\n"))
}

#[get("/metrics")]
async fn metrics(state: web::Data<HttpState>, request: HttpRequest) -> HttpResponse {
    let config = state.live.current();
    let from_allowed = request.peer_addr().is_some_and(|peer| {
        config
            .http
            .metrics_networks
            .iter()
            .any(|network| network.contains(peer.ip()))
    });
    let token = config.http.admin_token.as_deref();
    if !from_allowed && !token.is_some_and(|token| super::admin_api::bears_token(&request, token)) {
        return HttpResponse::Forbidden()
            .content_type("text/plain; charset=utf-8")
            .body("metrics are served to [http] metrics_networks, or with the admin token\n");
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&state.metrics))
}
