//! Admin API under `/_emulator/` (JSON; request bodies may be JSON or YAML, sent as
//! `Content-Type: application/json`). A test tool's back door: it reads the secret keys and
//! replaces the state, so [`guard`] answers 403 to anything a web page could send (a foreign
//! `Host` or `Origin`, a body without a JSON content type).
//!
//! | Method | Path | Effect |
//! |---|---|---|
//! | GET | `/_emulator/state` | current state (seed format) |
//! | PUT | `/_emulator/state` | replace the state (running tasks are discarded) |
//! | GET | `/_emulator/calls` | counters and request log |
//! | POST | `/_emulator/reset` | clear counters/log; body `{"state": true}` also restores the initial state |
//! | GET | `/_emulator/faults` | current fault config |
//! | POST/PUT | `/_emulator/faults` | replace the fault config |
//! | GET | `/_emulator/tasks` | all tasks |
//! | DELETE | `/_emulator/listeners/{lb}/{listener}` | delete a listener |
//! | POST | `/_emulator/clock` | body `{"offset_secs": N}` shifts the signing clock; `{"advance_ms": N}` moves emulator time forward |
//! | POST | `/_emulator/settings` | body `{"task_delay_ms", "rate_limit_per_action", "backend_quota", "health_interval_ms", "health_timeout_ms", "healthy_threshold", "unhealthy_threshold"}` (all optional) |
//! | GET | `/_emulator/health` | health-check config, serving flags and every target's health |
//! | GET | `/_emulator/serving` | serving flags `{"default": true, "ips": {"10.0.0.1": false}}` |
//! | POST / PUT | `/_emulator/serving` | change (POST) or replace (PUT) serving flags |
//! | POST | `/_emulator/traffic` | start (or restart from zero) the traffic model; body: [`crate::TrafficConfig`] (all optional) |
//! | GET | `/_emulator/traffic` | what the traffic model counted: per rule sent, failed, longest window without a target, time series |
//! | GET / PUT | `/_emulator/sts` | whom STS trusts and the lifetime of its credentials ([`crate::StsConfig`]) |
//! | GET / PUT | `/_emulator/metadata` | the CVM metadata endpoint's role ([`crate::MetadataConfig`]) |
//! | GET | `/_emulator/credentials` | every temporary credential issued (STS and metadata), with expiry |
//! | POST | `/_emulator/credentials/expire` | make every temporary credential issued so far expire now |

use crate::response::{Resp, json_response};
use crate::state::normalize_ip;
use crate::{Faults, HealthConfig, MetadataConfig, Serving, Shared, State, StsConfig, TrafficConfig};
use hyper::Method;
use hyper::http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

fn ok(v: Value) -> Resp {
    json_response(200, serde_json::to_vec_pretty(&v).unwrap_or_default(), "application/json")
}

fn err(status: u16, msg: impl std::fmt::Display) -> Resp {
    json_response(
        status,
        serde_json::to_vec(&json!({"error": msg.to_string()})).unwrap_or_default(),
        "application/json",
    )
}

/// Parses a JSON or YAML body (empty = `{}`); `Err` is the message for a 400 answer.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ResetBody {
    state: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ClockBody {
    offset_secs: Option<i64>,
    advance_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct SettingsBody {
    task_delay_ms: Option<u64>,
    rate_limit_per_action: Option<u32>,
    backend_quota: Option<u32>,
    health_interval_ms: Option<u64>,
    health_timeout_ms: Option<u64>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
}

/// `POST /_emulator/serving`: flags to change (`default` optional); `PUT` replaces all.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ServingBody {
    default: Option<bool>,
    ips: BTreeMap<String, bool>,
}

/// Normalises the IPs of a serving body (400 for anything that is not an IP).
fn serving_flags(base: Serving, body: ServingBody) -> Result<Serving, String> {
    let mut out = base;
    if let Some(d) = body.default {
        out.default = d;
    }
    for (ip, flag) in body.ips {
        out.ips.insert(normalize_ip(&ip)?, flag);
    }
    Ok(out)
}

/// True for a `Host` (or `Origin` authority) naming the loopback interface: `localhost`,
/// 127.0.0.0/8 or `::1`, each with an optional port (`[::1]:9080`).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) if tail.is_empty() || is_port(tail) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if !name.contains(':') => {
                if !is_port(&format!(":{port}")) {
                    return false;
                }
                name
            }
            _ => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(tail: &str) -> bool {
    tail.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuses what a web page could send to the admin API (which reads and changes secrets and
/// state): a `Host` that is not loopback (DNS rebinding), an `Origin` that is not loopback, and a
/// body without a JSON content type (a "simple" cross-origin POST cannot set one).
fn guard(parts: &Parts) -> Result<(), String> {
    let header = |n: &str| parts.headers.get(n).map(|v| v.to_str().unwrap_or("<not ASCII>"));
    match header("host") {
        Some(h) if is_loopback_host(h) => {}
        Some(h) => {
            return Err(format!(
                "Host `{h}` is not a loopback address; the admin API answers only requests to 127.0.0.1, ::1 or localhost"
            ));
        }
        None => {
            return Err(
                "the request has no Host header; the admin API answers only requests to 127.0.0.1, ::1 or localhost"
                    .into(),
            );
        }
    }
    if let Some(origin) = header("origin") {
        let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
        if !is_loopback_host(authority) {
            return Err(format!(
                "Origin `{origin}` is not a loopback address; the admin API refuses cross-site requests"
            ));
        }
    }
    if parts.method == Method::POST || parts.method == Method::PUT {
        let ct = header("content-type").unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(format!(
                "Content-Type `{ct}` refused: admin {} requests must be sent as application/json",
                parts.method
            ));
        }
    }
    Ok(())
}

/// Every temporary credential issued, each with whether it has expired.
fn issued(shared: &Shared) -> Value {
    let now = shared.now_unix_ms();
    let all = shared.lock().issued.all();
    let list: Vec<Value> = all
        .into_iter()
        .map(|c| {
            let expired = c.expired_at(now);
            let mut v = json!(c);
            v["expired"] = json!(expired);
            v
        })
        .collect();
    Value::Array(list)
}

/// Handles one admin request.
pub(crate) fn handle(shared: &Shared, parts: &Parts, body: &[u8]) -> Resp {
    if let Err(msg) = guard(parts) {
        tracing::warn!(target: "clb_emulator", "admin {} {} -> 403: {msg}", parts.method, parts.uri.path());
        return err(403, format!("admin API refused: {msg}"));
    }
    let path = parts.uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let r = match (&parts.method, &segs[1..]) {
        (&Method::GET, ["state"]) => Ok(ok(json!(shared.settled().world.to_state()))),
        (&Method::PUT, ["state"]) => parse::<State>(body).map(|st| match shared.set_state(&st) {
            Ok(()) => ok(json!({"ok": true})),
            Err(e) => err(400, e),
        }),
        (&Method::GET, ["calls"]) => Ok(ok(json!(shared.lock().calls))),
        (&Method::POST, ["reset"]) => parse::<ResetBody>(body).map(|b| {
            shared.reset(b.state);
            ok(json!({"ok": true}))
        }),
        (&Method::GET, ["faults"]) => Ok(ok(json!(shared.lock().engine.faults))),
        (&Method::POST | &Method::PUT, ["faults"]) => parse::<Faults>(body).map(|f| {
            shared.lock().engine = crate::faults::FaultEngine::new(f);
            ok(json!({"ok": true}))
        }),
        (&Method::GET, ["tasks"]) => Ok(ok(json!(shared.settled().tasks.all()))),
        (&Method::DELETE, ["listeners", lb, listener]) => {
            let existed = shared.settled().world.delete_listener(lb, listener);
            Ok(if existed {
                ok(json!({"deleted": true}))
            } else {
                err(404, format!("listener {lb}/{listener} not found"))
            })
        }
        (&Method::POST, ["clock"]) => parse::<ClockBody>(body).map(|b| {
            if let Some(secs) = b.offset_secs {
                shared.clock_offset.store(secs, Ordering::Relaxed);
            }
            if let Some(ms) = b.advance_ms {
                shared.clock.advance(std::time::Duration::from_millis(ms));
            }
            ok(json!({"ok": true}))
        }),
        (&Method::GET, ["health"]) => {
            let targets = shared.health();
            let g = shared.lock();
            Ok(ok(json!({"config": g.health.config, "serving": g.health.serving(), "targets": targets})))
        }
        (&Method::GET, ["serving"]) => Ok(ok(json!(shared.lock().health.serving()))),
        (&Method::POST | &Method::PUT, ["serving"]) => parse::<ServingBody>(body).and_then(|b| {
            let base = if parts.method == Method::PUT { Serving::default() } else { shared.lock().health.serving() };
            let flags = serving_flags(base, b)?;
            shared.set_serving(flags.clone());
            Ok(ok(json!(flags)))
        }),
        (&Method::POST, ["traffic"]) => parse::<TrafficConfig>(body).map(|c| {
            shared.start_traffic(c);
            ok(json!({"ok": true}))
        }),
        (&Method::GET, ["traffic"]) => Ok(match shared.traffic_report() {
            Some(r) => ok(json!(r)),
            None => err(404, "the traffic model is not running: POST /_emulator/traffic first"),
        }),
        (&Method::GET, ["sts"]) => Ok(ok(json!(shared.lock().sts))),
        (&Method::PUT, ["sts"]) => parse::<StsConfig>(body).map(|c| {
            shared.lock().sts = c;
            ok(json!({"ok": true}))
        }),
        (&Method::GET, ["metadata"]) => Ok(ok(json!(shared.lock().metadata))),
        (&Method::PUT, ["metadata"]) => parse::<MetadataConfig>(body).map(|c| {
            shared.lock().metadata = c;
            ok(json!({"ok": true}))
        }),
        (&Method::GET, ["credentials"]) => Ok(ok(issued(shared))),
        (&Method::POST, ["credentials", "expire"]) => {
            let now = shared.now_unix_ms();
            shared.lock().issued.expire_all(now);
            Ok(ok(json!({"ok": true})))
        }
        (&Method::POST, ["settings"]) => parse::<SettingsBody>(body).map(|b| {
            if let Some(v) = b.task_delay_ms {
                shared.task_delay_ms.store(v, Ordering::Relaxed);
            }
            if let Some(v) = b.rate_limit_per_action {
                shared.rate_limit.store(v, Ordering::Relaxed);
            }
            if let Some(v) = b.backend_quota {
                shared.backend_quota.store(v, Ordering::Relaxed);
            }
            if b.health_interval_ms.is_some()
                || b.health_timeout_ms.is_some()
                || b.healthy_threshold.is_some()
                || b.unhealthy_threshold.is_some()
            {
                let old = shared.lock().health.config;
                shared.set_health_config(HealthConfig {
                    interval_ms: b.health_interval_ms.unwrap_or(old.interval_ms),
                    timeout_ms: b.health_timeout_ms.unwrap_or(old.timeout_ms),
                    healthy_threshold: b.healthy_threshold.unwrap_or(old.healthy_threshold),
                    unhealthy_threshold: b.unhealthy_threshold.unwrap_or(old.unhealthy_threshold),
                });
            }
            ok(json!({"ok": true}))
        }),
        _ => Ok(err(404, format!("no admin route {} {}", parts.method, parts.uri.path()))),
    };
    let resp = r.unwrap_or_else(|e| err(400, e));
    tracing::info!(target: "clb_emulator", "admin {} {} -> {}", parts.method, parts.uri.path(), resp.status().as_u16());
    resp
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in
            ["127.0.0.1", "127.0.0.1:9080", "127.1.2.3:1", "localhost", "LOCALHOST:80", "[::1]", "[::1]:9080", "::1"]
        {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example",
            "evil.example:9080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "10.0.0.1:9080",
            "[::2]:80",
            "[::1]x",
            "127.0.0.1:",
            "127.0.0.1:80x",
            "0.0.0.0:9080",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
