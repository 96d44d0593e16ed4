//! Admin API under `/_emulator/` (JSON; request bodies may be JSON or YAML):
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
//! | POST | `/_emulator/clock` | body `{"offset_secs": N}` shifts the emulator clock |
//! | POST | `/_emulator/settings` | body `{"task_delay_ms", "rate_limit_per_action", "backend_quota"}` (all optional) |

use crate::response::{Resp, json_response};
use crate::{Faults, Shared, State};
use hyper::Method;
use hyper::http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};
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
#[serde(deny_unknown_fields)]
struct ClockBody {
    offset_secs: i64,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct SettingsBody {
    task_delay_ms: Option<u64>,
    rate_limit_per_action: Option<u32>,
    backend_quota: Option<u32>,
}

/// Handles one admin request.
pub(crate) fn handle(shared: &Shared, parts: &Parts, body: &[u8]) -> Resp {
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
            shared.clock_offset.store(b.offset_secs, Ordering::Relaxed);
            ok(json!({"ok": true}))
        }),
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
            ok(json!({"ok": true}))
        }),
        _ => Ok(err(404, format!("no admin route {} {}", parts.method, parts.uri.path()))),
    };
    let resp = r.unwrap_or_else(|e| err(400, e));
    tracing::info!(target: "clb_emulator", "admin {} {} -> {}", parts.method, parts.uri.path(), resp.status().as_u16());
    resp
}
