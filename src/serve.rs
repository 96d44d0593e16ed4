//! The tiny HTTP server of watch mode (`--metrics-addr`): `GET /healthz` (the process answers), `/readyz` (the
//! probe given says ready) and `/metrics` (the registry in the text format). Anything else is 404; nothing is
//! read from the request but its method and path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::observe::metrics::{self, Metrics};

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the endpoints answer from.
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    /// `/readyz`: `Ok(())` when ready, otherwise why not.
    pub ready: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
}

/// Binds `addr` and serves the endpoints until the task is dropped. Returns the bound address (port 0 picks one).
pub async fn spawn(addr: SocketAddr, endpoints: Endpoints) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --metrics-addr {addr}: check the port is free"))?;
    let bound = listener.local_addr().context("reading the metrics listener's address")?;
    let endpoints = Arc::new(endpoints);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("accepting a metrics connection: {e}");
                    continue;
                }
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let endpoints = endpoints.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &endpoints)) }
                });
                // A client that never finishes its request headers is dropped instead of holding a task.
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!("metrics connection: {e}");
                }
            });
        }
    });
    tracing::info!(addr = %bound, "serving /healthz, /readyz and /metrics");
    Ok(bound)
}

fn answer(req: &Request<Incoming>, endpoints: &Endpoints) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a status, one header and a body make a valid response")
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n".to_owned());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".to_owned()),
        "/readyz" => match (endpoints.ready)() {
            Ok(()) => text(StatusCode::OK, PLAIN, "ok\n".to_owned()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("{why}\n")),
        },
        "/metrics" => text(StatusCode::OK, metrics::CONTENT_TYPE, endpoints.metrics.encode()),
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found: /healthz, /readyz, /metrics\n".to_owned()),
    }
}
