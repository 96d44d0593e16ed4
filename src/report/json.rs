//! The JSON document (`-o json`); its fields are documented in docs/src/commands.md ("JSON output").

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::split;
use crate::apply::{ApplyReport, RowStatus};
use crate::model::GATE_CONDITION;
use crate::plan::{Plan, Row, RulePlan, Status, Summary};

/// The JSON document (`-o json`), serialised straight from the plan: its lists are written one item at a time,
/// never collected.
pub(super) struct Document<'a> {
    pub plan: &'a Plan,
    pub applied: Option<&'a ApplyReport>,
    pub show_unchanged: bool,
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let summary = self.plan.summary();
        let counts = self.applied.map(ApplyReport::counts);
        let summary = JsonSummary {
            plan: summary,
            errors: summary.skipped + counts.map_or(0, |c| c.1),
            applied: counts.map(|c| c.0),
            failed: counts.map(|c| c.1),
            not_attempted: counts.map(|c| c.2),
        };
        let mut doc = serializer.serialize_struct("Document", 6)?;
        doc.serialize_field("in_sync", &self.plan.in_sync())?;
        doc.serialize_field("fingerprint", &self.plan.fingerprint().to_string())?;
        doc.serialize_field("summary", &summary)?;
        doc.serialize_field("changes", &Changes(self))?;
        doc.serialize_field("rules", &Rules(self.plan))?;
        // Readiness-gate conditions set (or, for `diff`, to set); left out when there are none.
        if self.plan.gate.is_empty() {
            doc.skip_field("gate")?;
        } else {
            doc.serialize_field("gate", &Gate(self.plan))?;
        }
        doc.end()
    }
}

/// The `changes` array: the pending rows of ready rules (every row with `--show-unchanged`).
struct Changes<'a>(&'a Document<'a>);

impl Serialize for Changes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Document { plan, applied, show_unchanged } = *self.0;
        let ready = plan.rules.iter().filter(|rule| rule.status == Status::Ready);
        serializer.collect_seq(ready.flat_map(|rule| {
            let shown = rule.rows.iter().filter(move |row| row.is_pending() || show_unchanged);
            shown.map(move |row| change(rule, row, applied.map(|a| a.status(rule.id, row))))
        }))
    }
}

/// The `rules` array.
struct Rules<'a>(&'a Plan);

impl Serialize for Rules<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.rules.iter().map(json_rule))
    }
}

/// The `gate` array.
struct Gate<'a>(&'a Plan);

impl Serialize for Gate<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.gate.iter().map(|g| JsonGate {
            namespace: &g.namespace,
            pod: &g.pod,
            condition: GATE_CONDITION,
            status: if g.condition.status { "True" } else { "False" },
            reason: &g.condition.reason,
            message: &g.condition.message,
        }))
    }
}

#[derive(Serialize)]
struct JsonGate<'a> {
    namespace: &'a str,
    pod: &'a str,
    condition: &'static str,
    status: &'static str,
    reason: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonSummary {
    #[serde(flatten)]
    plan: Summary,
    /// Skipped rules plus failed changes.
    errors: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_attempted: Option<usize>,
}

/// Where a rule binds: shared by changes and rules.
#[derive(Serialize)]
struct JsonPlace<'a> {
    load_balancer_id: &'a str,
    listener_id: Option<&'a str>,
    location_id: Option<&'a str>,
    protocol: String,
    port: u16,
    domain: Option<&'a str>,
    url: Option<&'a str>,
}

impl<'a> JsonPlace<'a> {
    /// The place of a rule, with the resolved ids when resolution succeeded.
    fn of(rule: &'a RulePlan) -> Self {
        let place = &rule.place;
        let binding = rule.binding.as_ref();
        JsonPlace {
            load_balancer_id: &place.load_balancer_id,
            listener_id: binding.map(|b| b.listener.as_str()).or(rule.listener_id.as_deref()),
            location_id: binding.and_then(|b| b.location.as_deref()).or(rule.location_id.as_deref()),
            protocol: place.protocol.to_string(),
            port: place.port,
            domain: place.l7.as_ref().map(|(d, _)| d.as_str()),
            url: place.l7.as_ref().map(|(_, u)| u.as_str()),
        }
    }
}

#[derive(Serialize)]
pub(super) struct JsonChange<'a> {
    action: &'static str,
    #[serde(flatten)]
    place: JsonPlace<'a>,
    ip: String,
    target_port: u16,
    weight: Option<u8>,
    previous_weight: Option<u8>,
    namespace: &'a str,
    pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    /// The `--owner` the change is made for.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    /// Why an unmanaged target is unmanaged: `cvm`, `owner:NAME`, `untagged` or `tag:VALUE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    unmanaged: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsonError<'a>>,
}

#[derive(Serialize)]
struct JsonError<'a> {
    code: &'a str,
    message: &'a str,
    request_id: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonRule<'a> {
    rule: &'a str,
    line: usize,
    #[serde(flatten)]
    place: JsonPlace<'a>,
    namespace: &'a str,
    pods: &'a str,
    status: &'static str,
    reason: Option<&'a str>,
    warnings: &'a [String],
    /// Each backend of a `backends:` rule: requested and achieved share (percent), targets, weight.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    split: Vec<split::JsonSplit<'a>>,
}

pub(super) fn change<'a>(rule: &'a RulePlan, row: &'a Row, status: Option<&'a RowStatus>) -> JsonChange<'a> {
    let (status_word, error) = match status {
        None => (None, None),
        Some(RowStatus::NoOp) => (Some("noop"), None),
        Some(RowStatus::Applied) => (Some("applied"), None),
        Some(RowStatus::Failed(f)) => (
            Some("failed"),
            Some(JsonError { code: &f.code, message: &f.message, request_id: f.request_id.as_deref() }),
        ),
        Some(RowStatus::NotAttempted(why)) => {
            (Some("not_attempted"), Some(JsonError { code: "NotAttempted", message: why, request_id: None }))
        }
    };
    JsonChange {
        action: row.action.as_str(),
        place: JsonPlace::of(rule),
        ip: row.target.ip.to_string(),
        target_port: row.target.port,
        weight: row.weight,
        previous_weight: row.current_weight,
        namespace: &rule.namespace,
        pod: row.pod.as_deref(),
        note: row.note.as_deref(),
        owner: rule.owner.as_ref().map(|o| o.name()),
        unmanaged: row.unmanaged.as_ref().map(|u| u.reason()),
        status: status_word,
        error,
    }
}

fn json_rule(rule: &RulePlan) -> JsonRule<'_> {
    let (status, reason) = match &rule.status {
        Status::Ready => ("ok", None),
        Status::Blocked { reason } => ("blocked", Some(reason.as_str())),
        Status::Skipped { reason } => ("skipped", Some(reason.as_str())),
    };
    JsonRule {
        rule: &rule.path,
        line: rule.line,
        place: JsonPlace::of(rule),
        namespace: &rule.namespace,
        pods: &rule.pods,
        status,
        reason,
        warnings: &rule.warnings,
        split: split::json(rule),
    }
}
