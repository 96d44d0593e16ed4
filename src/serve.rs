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

/// At most this many connections are served at once; more are closed as they are accepted. Scrapes and probes
/// need a handful: the cap keeps the process's file descriptors for the passes (CLB, the API server).
pub const MAX_CONNECTIONS: usize = 64;

/// At most this many of them from one peer address: one client cannot take every slot from the kubelet's probes
/// (which come from the node's address, so a hostNetwork pod on the same node still shares theirs).
pub const MAX_PER_PEER: usize = 8;

/// Longest a connection is kept, requests included: no client holds a slot for longer.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Binds `addr` and serves the endpoints until the task is dropped. Returns the bound address (port 0 picks one).
pub async fn spawn(addr: SocketAddr, endpoints: Endpoints) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --metrics-addr {addr}: check the port is free"))?;
    let bound = listener.local_addr().context("reading the metrics listener's address")?;
    tokio::spawn(accept_loop(listener, Arc::new(endpoints)));
    tracing::info!(addr = %bound, "serving /healthz, /readyz and /metrics");
    Ok(bound)
}

async fn accept_loop(listener: TcpListener, endpoints: Arc<Endpoints>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let peers: Peers = Arc::default();
    let mut errors = Backoff::default();
    let mut refused_logged = false;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok((stream, peer)) => {
                errors.reset();
                (stream, peer.ip())
            }
            Err(e) => {
                // Out of file descriptors (EMFILE) fails every accept until one is freed: wait instead of spinning,
                // and say so once per run of errors.
                errors.failed(&e).await;
                continue;
            }
        };
        let (Some(peer_slot), Ok(slot)) = (PeerSlot::take(&peers, peer), slots.clone().try_acquire_owned()) else {
            if !std::mem::replace(&mut refused_logged, true) {
                tracing::warn!(
                    "more than {MAX_CONNECTIONS} connections to the metrics port at once, or {MAX_PER_PEER} from one address ({peer}): closing the new ones (logged once)"
                );
            }
            drop(stream);
            continue;
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let _slots = (slot, peer_slot);
            let service = service_fn(move |req| {
                let endpoints = endpoints.clone();
                async move { Ok::<_, Infallible>(answer(&req, &endpoints)) }
            });
            // A client that never finishes its request headers is dropped instead of holding a slot.
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

/// Connections open per peer address.
type Peers = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One of a peer's [`MAX_PER_PEER`] connections, given back when dropped.
struct PeerSlot {
    peers: Peers,
    peer: std::net::IpAddr,
}

impl PeerSlot {
    fn take(peers: &Peers, peer: std::net::IpAddr) -> Option<PeerSlot> {
        let mut open = peers.lock().expect("never held across a panic");
        let n = open.entry(peer).or_default();
        if *n >= MAX_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot { peers: peers.clone(), peer })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.lock().expect("never held across a panic");
        if let Some(n) = open.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// The wait after failed accepts: doubling from 10 ms to 1 s, logged at the first failure of a run of them.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    async fn failed(&mut self, e: &std::io::Error) {
        if self.failures == 0 {
            tracing::warn!(
                "accepting a metrics connection: {e}; waiting before the next accept (logged once until one succeeds)"
            );
        }
        let wait =
            std::time::Duration::from_millis(10u64 << self.failures.min(7)).min(std::time::Duration::from_secs(1));
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(wait).await;
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
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
