//! Cutting off the credentials the instance already had. Swapping the instance profile stops new
//! credentials, but those issued before stay valid until they expire, wherever they were copied
//! to. IAM's way to end them is a Deny conditioned on when the session was issued, scoped here to
//! sessions of this one instance (`ec2:SourceInstanceARN`): a role is often shared by a fleet,
//! and the other instances must keep working.
//!
//! The Deny lives in one customer-managed policy per member account, `AirfRevokedSessions`
//! (template 4), used as the **permissions boundary** of every role whose sessions airf revokes.
//! A boundary can only take permissions away, so the controller's right to rewrite it cannot be
//! turned into a grant (issue 12, finding 8); and the controller never changes airf's own roles:
//! the acquisition role carries the boundary from the template (finding 1).
//!
//! - The policy holds one `Deny` per containment minute, and drops it once no credential issued
//!   before it can be valid any more ([`boundary::LIFETIME_SECS`]): bounded, where an inline
//!   policy per instance filled a role's 10,240 characters after about 30 investigations.
//! - A role with a permissions boundary of its own is left alone: replacing it could widen the
//!   role. The result and the notification say so and what the responder must do.
//! - When the policy would exceed IAM's 6,144 characters, nothing is written, and the result says
//!   which roles to revoke by hand. Containment goes on in every case.
//!
//! Concurrent containments in one account race on the policy (read, add, write a new version).
//! IAM has no compare-and-swap, so `record` treats the versions as a log: every write carries
//! the revocations of the versions written around it, and a containment is done only once the
//! default version covers it.

pub mod boundary;

use crate::cloud::{Cloud, NewVersion, PolicyVersion};
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::model::{Target, partition};
use boundary::Boundary;
use serde::{Deserialize, Serialize};

/// Versions created this recently are read as possibly concurrent: their revocations are
/// carried into the next version even when the default version lacks them. A person who deletes
/// a revocation by hand within this window after a containment may see it come back.
pub const RACE_WINDOW_SECS: i64 = 15 * 60;
/// IAM keeps at most five versions of a managed policy.
pub const MAX_VERSIONS: usize = 5;
/// Rounds of read, write, verify before the step gives up (and the workflow retries it).
const MAX_ATTEMPTS: usize = 10;

/// What the revocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Sessions from the instance issued before this time (RFC 3339) are denied.
    pub before: String,
    /// Roles whose earlier sessions from the instance are denied.
    pub revoked_roles: Vec<String>,
    /// Roles whose sessions are not revoked: why, and what the responder must do.
    pub not_revoked: Vec<String>,
}

/// ARN of the account's revocation boundary.
pub fn policy_arn(target: &Target, policy_name: &str) -> String {
    format!(
        "arn:{}:iam::{}:policy/{policy_name}",
        partition(&target.region),
        target.account
    )
}

/// The revocation time for a containment at `now` (RFC 3339): `now` rounded **up** to the
/// minute, so that containments of the same minute share one statement. Rounding up is safe: a
/// session issued between `now` and the next minute is either the deny-all profile's, attached
/// before this step, or one the old role issued while the swap took effect; both should be
/// denied. (A boundary-carrying role attached to this instance again before that minute would
/// have its first credentials denied: steps after containment must wait for `before`.)
pub fn revocation_time(now: &str) -> Result<i64> {
    let secs = boundary::parse_time_up(now)
        .ok_or_else(|| Error::failed(format!("the current time {now:?} is not RFC 3339")))?;
    Ok(secs.div_euclid(60) * 60 + if secs.rem_euclid(60) == 0 { 0 } else { 60 })
}

/// What the responder must do for `role` when airf could not revoke its sessions.
fn by_hand(role: &str) -> String {
    format!(
        "revoke its sessions in the IAM console (Roles > {role} > Revoke sessions > Revoke \
         active sessions; this ends every session of the role issued before now, on every \
         instance that uses it)"
    )
}

/// Revokes the sessions that the instance got before now from the roles of `profiles`.
pub async fn revoke<C: Cloud>(
    cloud: &C,
    config: &Config,
    target: &Target,
    profiles: &[String],
    now: &str,
) -> Result<Revocation> {
    let mut roles: Vec<String> = Vec::new();
    for profile in profiles {
        for role in cloud.profile_roles(target, profile).await? {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    revoke_roles(cloud, config, target, &roles, now).await
}

/// Revokes the sessions of `roles` that the instance got before now.
pub async fn revoke_roles<C: Cloud>(
    cloud: &C,
    config: &Config,
    target: &Target,
    roles: &[String],
    now: &str,
) -> Result<Revocation> {
    let before = revocation_time(now)?;
    let now_secs = boundary::parse_time_up(now).unwrap_or(before);
    let arn = policy_arn(target, &config.revoke_policy_name);
    let mut out = Revocation {
        before: boundary::rfc3339(before),
        ..Revocation::default()
    };

    // Which roles the boundary can cover: those with no boundary (set it) or with airf's.
    let mut to_set = Vec::new();
    let mut covered = Vec::new();
    for role in roles {
        match soft(cloud.role_boundary(target, role).await)? {
            Err(e) => out.not_revoked.push(format!(
                "role {role}: could not read it ({e}); {}",
                by_hand(role)
            )),
            Ok(None) => to_set.push(role.clone()),
            Ok(Some(b)) if b == arn => covered.push(role.clone()),
            Ok(Some(other)) => out.not_revoked.push(format!(
                "role {role} has its own permissions boundary {other}, which airf does not \
                 replace (that could widen the role); {}",
                by_hand(role)
            )),
        }
    }
    if to_set.is_empty() && covered.is_empty() {
        return Ok(out);
    }

    if let Err(why) = record(cloud, target, &arn, before, now_secs).await? {
        for role in to_set.iter().chain(&covered) {
            out.not_revoked
                .push(format!("role {role}: {why}; {}", by_hand(role)));
        }
        return Ok(out);
    }
    for role in roles {
        if covered.contains(role) {
            out.revoked_roles.push(role.clone());
        } else if to_set.contains(role) {
            match soft(cloud.put_role_boundary(target, role, &arn).await)? {
                Ok(()) => out.revoked_roles.push(role.clone()),
                Err(e) => out.not_revoked.push(format!(
                    "role {role}: could not set the permissions boundary {arn} ({e}); {}",
                    by_hand(role)
                )),
            }
        }
    }
    Ok(out)
}

/// A retryable failure stays an error (the workflow retries the step, which is idempotent); any
/// other failure is a reason to report, and containment goes on.
fn soft<T>(result: Result<T>) -> Result<Result<T, Error>> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e) if e.kind() == Kind::Transient => Err(e),
        Err(e) => Ok(Err(e)),
    }
}

/// Makes the default version of the policy deny sessions of the target issued before `before`.
/// `Ok(Err(why))`: it cannot be recorded (policy full, unreadable, refused), and why.
async fn record<C: Cloud>(
    cloud: &C,
    target: &Target,
    arn: &str,
    before: i64,
    now: i64,
) -> Result<Result<(), String>> {
    let instance = target.instance_arn();
    // Everything this containment must see in the default version before it is done: its own
    // revocation, and those of concurrent versions it read (see the module doc).
    let mut wanted = Boundary::default();
    wanted.add(before, &instance);
    let mut base: Option<u64> = None;
    for _ in 0..MAX_ATTEMPTS {
        let versions = match soft(cloud.policy_versions(target, arn).await)? {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(format!(
                    "the revocation policy {arn} cannot be read ({e})"
                )));
            }
        };
        let Some(default) = versions.iter().find(|v| v.is_default) else {
            return Ok(Err(format!(
                "the revocation policy {arn} has no default version"
            )));
        };
        let base = *base.get_or_insert(default.number().unwrap_or(0));
        let mut read = Vec::new();
        for v in &versions {
            let document = match soft(cloud.policy_version_document(target, arn, &v.id).await)? {
                Ok(Some(d)) => d,
                Ok(None) => continue, // deleted since the listing, by a concurrent containment
                Err(e) => {
                    return Ok(Err(format!(
                        "version {} of {arn} cannot be read ({e})",
                        v.id
                    )));
                }
            };
            match Boundary::parse(&document) {
                Ok(b) => read.push((v, b)),
                // Never overwrite what cannot be read: it may hold someone's Deny.
                Err(e) if v.is_default => return Ok(Err(format!("{arn} version {}: {e}", v.id))),
                Err(_) => {}
            }
        }
        let Some(mut current) = read
            .iter()
            .find(|(v, _)| v.is_default)
            .map(|(_, b)| b.clone())
        else {
            continue; // the default changed between the listing and the read
        };
        for (v, b) in &read {
            if !v.is_default && concurrent(v, base, now) {
                wanted.absorb(b);
            }
        }
        current.prune(now);
        if current.covers_all(&wanted, now) {
            return Ok(Ok(()));
        }

        if versions.len() >= MAX_VERSIONS {
            // Delete a version the default already covers; failing that, the oldest, whose
            // revocations this containment then carries into the version it writes.
            let mut old: Vec<&(&PolicyVersion, Boundary)> =
                read.iter().filter(|(v, _)| !v.is_default).collect();
            old.sort_by_key(|(v, _)| v.number().unwrap_or(0));
            let victim = match old.iter().find(|(_, b)| current.covers_all(b, now)) {
                Some(covered) => Some(covered),
                None => old.first().inspect(|(_, b)| wanted.absorb(b)),
            };
            if let Some((v, _)) = victim
                && let Err(e) = soft(cloud.delete_policy_version(target, arn, &v.id).await)?
            {
                return Ok(Err(format!("cannot make room in {arn} ({e})")));
            }
        }
        let mut next = current;
        next.absorb(&wanted);
        next.prune(now);
        let document = match next.document() {
            Ok(d) => d,
            Err(full) => return Ok(Err(format!("the revocation policy {arn} is full ({full})"))),
        };
        match soft(cloud.create_policy_version(target, arn, &document).await)? {
            Ok(NewVersion::Created(_)) => {} // verified on the next round
            Ok(NewVersion::LimitExceeded(message)) => {
                // The size quota (IAM counted more than we did): full. Otherwise five versions
                // again, after a concurrent write: go round.
                if message.contains("PolicySize") {
                    return Ok(Err(format!(
                        "the revocation policy {arn} is full ({message})"
                    )));
                }
            }
            Err(e) => return Ok(Err(format!("IAM refused a new version of {arn} ({e})"))),
        }
    }
    // Reported rather than retried: a retried step would race the same containments again,
    // and the snapshots and the Contain tag still have to come.
    Ok(Err(format!(
        "the revocation policy {arn} kept changing under concurrent containments \
         ({MAX_ATTEMPTS} attempts)"
    )))
}

/// Whether version `v` may have been written concurrently with this containment: created after
/// the default version it first read, or within [`RACE_WINDOW_SECS`].
fn concurrent(v: &PolicyVersion, base: u64, now: i64) -> bool {
    v.number().is_none_or(|n| n > base) || v.created >= now - RACE_WINDOW_SECS
}

#[cfg(test)]
mod tests;
