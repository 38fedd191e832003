//! HTTP endpoints for Kubernetes and Prometheus: `/healthz` (liveness),
//! `/readyz` (readiness) and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health::{Probes, Report};

#[derive(Clone)]
struct AppState {
    probes: Arc<Probes>,
}

fn answer(r: Report) -> impl IntoResponse {
    let code = if r.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], r.body())
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    answer(s.probes.live())
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    answer(s.probes.ready())
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    // Before the plugin runs there are no metrics yet: an empty exposition.
    let body = s.probes.registry().map(|r| crate::metrics::encode(&r)).unwrap_or_else(|| "# EOF\n".into());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

/// Binds `addr` and serves until `stop`. Returns the bound address.
pub async fn serve(addr: &str, probes: Arc<Probes>, stop: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("http.listen {addr}: {e}")))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState { probes });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
    });
    Ok(bound)
}
