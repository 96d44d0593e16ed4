//! HTTP response type and constructor shared by the CLB API (`server.rs`) and the admin API
//! (`admin.rs`), so that neither depends on the other for it.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

/// A complete (non-streaming) response.
pub(crate) type Resp = Response<Full<Bytes>>;

/// A response with `status`, `body` and exactly `content_type` (the Python SDK parses API errors
/// only for `application/json` verbatim).
pub(crate) fn json_response(status: u16, body: Vec<u8>, content_type: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r
}
