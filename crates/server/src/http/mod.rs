//! The HTTPS service of a frontend (`[node.listen] https`): how clients find their
//! settings (Thunderbird autoconfig, Microsoft Autodiscover), the "Settings for POP or
//! IMAP access" page, the admin API, and health and metrics for monitoring.
//!
//! actix-web runs in the node's actix System on a worker of its own, over the same
//! certificate as the mail listeners (a reloaded certificate serves new connections
//! here too). What is not HTTP plumbing (XML, HTML, tokens) is in `portico-web`.

mod admin_api;
mod discovery;
mod health;
pub mod settings_page;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, http::StatusCode, web};
use anyhow::Context;
use rustls::ServerConfig;
use serde::Serialize;

use crate::admin::AdminContext;
use crate::live_config::LiveConfig;
use crate::node::NodeContext;
use crate::tls::CertStore;

/// What every request handler may use.
pub struct HttpState {
    pub live: Arc<LiveConfig>,
    pub node: Arc<NodeContext>,
    pub admin: Arc<AdminContext>,
    /// Signs the settings page's sessions and CSRF tokens.
    pub tokens: portico_web::token::TokenKey,
    pub revoked: settings_page::Revoked,
    /// The node's metrics, served at `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// Starts serving on `listener`; the handle stops it at shutdown.
pub fn start(
    listener: TcpListener,
    certificates: Arc<CertStore>,
    state: HttpState,
) -> anyhow::Result<ServerHandle> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let state = web::Data::new(state);
    let max_body = state.live.current().http.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .configure(health::routes)
            .configure(discovery::routes)
            .configure(settings_page::routes)
            .configure(admin_api::routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .listen_rustls_0_23(listener, tls)
    .context("serving HTTPS")?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// `{"error": "…"}` with `status`.
pub(crate) fn json_error(status: StatusCode, error: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody { error })
}
