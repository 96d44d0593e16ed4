//! A row of the plan: one target of one rule, and what happens to it.

use crate::model::{Health, Target, Weight};

/// What a row of the plan does to one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Register,
    Reweight,
    Drain,
    Deregister,
    /// Tag an untagged target of one of our pods as ours (`--adopt-untagged`), then manage it.
    Adopt,
    /// A drain or removal held back: the target still serves and the rule has no other target that takes traffic;
    /// or a split's target kept below its backend's weight until it passes health checks.
    Wait,
    Unchanged,
    Unmanaged,
}

impl Row {
    /// A change to make, or one that waits.
    pub fn is_pending(&self) -> bool {
        self.action.is_change() || self.action == Action::Wait
    }
}

impl Action {
    /// Lowercase name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Reweight => "reweight",
            Action::Drain => "drain",
            Action::Deregister => "deregister",
            Action::Adopt => "adopt",
            Action::Wait => "wait",
            Action::Unchanged => "unchanged",
            Action::Unmanaged => "unmanaged",
        }
    }

    /// Whether the row needs an API call.
    pub fn is_change(self) -> bool {
        matches!(self, Action::Register | Action::Reweight | Action::Drain | Action::Deregister | Action::Adopt)
    }
}

/// One target of one rule and what happens to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub action: Action,
    pub target: Target,
    /// The weight after the change (register, reweight, drain) or the current one otherwise.
    pub weight: Option<Weight>,
    /// The weight bound now, when the target is bound.
    pub current_weight: Option<Weight>,
    /// The pod behind the target, when there is one.
    pub pod: Option<String>,
    /// Why the row is what it is, when that is not obvious (e.g. `CVM ins-12345678`, `kept: upsert-only`).
    pub note: Option<String>,
    /// Which failed registrations of this run hold the row back (make before break).
    pub unless_failed: UnlessFailed,
    /// Why clbsync does not manage the target, for [`Action::Unmanaged`] rows.
    pub unmanaged: Option<Unmanaged>,
    /// What CLB's health checks say of the bound target ([`Health::Unknown`] when not read, or not bound).
    pub health: Health,
    /// For a [`Action::Wait`] row, since when (Unix seconds) it has waited, as far as anything records it: the
    /// deletion time of a terminating pod's target; for a target the rules no longer select, watch mode's first
    /// pass that held it ([`carry_waits`]). `None`: unknown (a batch run of such a wait).
    pub waiting_since: Option<i64>,
}

/// Why a bound target is not clbsync's to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmanaged {
    /// Bound as an instance (`CVM ins-…`), by hand.
    Instance { kind: String, instance_id: String },
    /// Tagged for another clbsync owner.
    Owner(String),
    /// Bound by IP without a tag while clbsync runs with `--owner` (adopt it with `--adopt-untagged`).
    Untagged,
    /// Tagged by something else than clbsync.
    Tagged(String),
}

impl Unmanaged {
    /// The reason in the JSON report: `cvm`, `owner:NAME`, `untagged` or `tag:VALUE`.
    pub fn reason(&self) -> String {
        match self {
            Unmanaged::Instance { kind, .. } => kind.to_lowercase(),
            Unmanaged::Owner(name) => format!("owner:{name}"),
            Unmanaged::Untagged => "untagged".into(),
            Unmanaged::Tagged(tag) => format!("tag:{tag}"),
        }
    }
}

/// A removal that must not happen when the registration that replaces it failed in the same run: `apply` holds
/// the row and reports it as not attempted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnlessFailed {
    /// Applied whatever else fails (registrations; removals of targets whose pod is gone).
    #[default]
    Unconditional,
    /// Held when a registration of the same IP on this rule failed (a pod's old port, while it moves to a new one).
    SamePod,
    /// Held when any registration or weight change on this rule failed (a drain makes room only once its
    /// replacements are bound at their weight).
    AnyOfRule,
}
