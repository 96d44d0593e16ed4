//! The fingerprint of a plan (`plan sha256:…`): a hash of what it would change and of the bound state it was
//! computed from, so that `reconcile --expect-plan` applies a reviewed plan only while it still holds.
//!
//! Hashed, per rule in the order of their places: where it binds, its status (ready, blocked with its reason,
//! skipped), the owner it manages for, and every row: action, target, planned and bound weight, and why an
//! unmanaged target is unmanaged. Left out, because they change without the plan changing: pod names, notes,
//! health, wait times, the reasons rules were skipped (they carry request ids), and the readiness-gate
//! conditions (they follow the CLB changes).

use std::fmt::Write;

use super::{RulePlan, Status};

/// A plan's SHA-256 fingerprint, shown and given as `sha256:` and 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// `sha256:` and 64 hex digits.
    pub fn parse(s: &str) -> Result<Fingerprint, String> {
        let bad =
            || format!("`{s}` is not a plan fingerprint: give it as `diff` prints it, `sha256:` and 64 hex digits");
        let hex = s.trim().strip_prefix("sha256:").ok_or_else(bad)?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The fingerprint of these rules' plans, whatever their order.
pub fn fingerprint<'a>(rules: impl IntoIterator<Item = &'a RulePlan>) -> Fingerprint {
    let mut lines: Vec<String> = rules.into_iter().map(canonical).collect();
    lines.sort();
    let digest = ring::digest::digest(&ring::digest::SHA256, lines.concat().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Fingerprint(out)
}

/// One rule's part of the hashed text: a line for the rule, then one per row. Every field is written with
/// `{:?}`, so no value can hold the separators.
fn canonical(rule: &RulePlan) -> String {
    let status = match &rule.status {
        Status::Ready => "ready".to_owned(),
        Status::Blocked { reason } => format!("blocked {reason:?}"),
        Status::Skipped { .. } => "skipped".to_owned(),
    };
    let place = &rule.place;
    let owner = rule.owner.as_ref().map(|o| o.name());
    let mut out = format!(
        "rule {:?} {} {} {:?} {:?} {:?} {status} {owner:?}\n",
        place.load_balancer_id, place.protocol, place.port, place.l7, rule.listener_id, rule.location_id
    );
    for row in &rule.rows {
        let unmanaged = row.unmanaged.as_ref().map(super::Unmanaged::reason);
        let _ = writeln!(
            out,
            "  {} {} {:?} {:?} {unmanaged:?}",
            row.action.as_str(),
            row.target,
            row.weight,
            row.current_weight
        );
    }
    out
}
