//! `/healthz` (the process answers) and `/readyz` (it can serve mail: the store is
//! open and the account directory has a leader and a replica here), for load
//! balancers and orchestrators, both plain text, 200 or 503; and `/metrics`, the
//! node's counters in Prometheus text format ([`crate::metrics`]).

use actix_web::{HttpResponse, get, web};

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
async fn metrics(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&state.metrics))
}
