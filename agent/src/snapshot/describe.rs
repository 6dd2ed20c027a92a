//! `DescribeSnapshots`: what the snapshot is, and waiting until the EBS direct APIs can read it
//! (they read only `completed` snapshots).

use std::time::{Duration, Instant};

use super::SnapshotError;
use super::clients::{Clients, code, explain};

/// What EC2 says about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// `snap-…`.
    pub id: String,
    /// `pending`, `completed`, `error`, `recoverable`, `recovering`.
    pub state: String,
    /// e.g. `42%`.
    pub progress: String,
    /// The volume it was taken of.
    pub volume_id: Option<String>,
    /// Volume size in GiB.
    pub volume_size_gib: Option<u64>,
    /// When it was started.
    pub start_time: Option<time::OffsetDateTime>,
    /// Encrypted or not.
    pub encrypted: bool,
    /// Its KMS key, when encrypted.
    pub kms_key_id: Option<String>,
    /// Owning account.
    pub owner_id: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Why it failed, when `state` is `error`.
    pub state_message: Option<String>,
    /// Tags, sorted by key.
    pub tags: Vec<(String, String)>,
}

impl SnapshotInfo {
    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `DescribeSnapshots` for one id.
pub async fn describe(clients: &Clients, id: &str) -> Result<SnapshotInfo, SnapshotError> {
    let out = clients
        .ec2
        .describe_snapshots()
        .snapshot_ids(id)
        .send()
        .await
        .map_err(|e| {
            if code(&e) == Some("InvalidSnapshot.NotFound") {
                SnapshotError::NotFound {
                    id: id.to_owned(),
                    region: clients.region.clone(),
                }
            } else {
                SnapshotError::Api(explain("ec2:DescribeSnapshots", id, &e))
            }
        })?;
    let Some(s) = out.snapshots().iter().find(|s| s.snapshot_id() == Some(id)) else {
        return Err(SnapshotError::NotFound {
            id: id.to_owned(),
            region: clients.region.clone(),
        });
    };
    let mut tags: Vec<(String, String)> = s
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect();
    tags.sort();
    Ok(SnapshotInfo {
        id: id.to_owned(),
        state: s
            .state()
            .map_or_else(|| "unknown".to_owned(), |st| st.as_str().to_owned()),
        progress: s.progress().unwrap_or("").to_owned(),
        volume_id: s.volume_id().map(str::to_owned),
        volume_size_gib: s.volume_size().and_then(|v| u64::try_from(v).ok()),
        start_time: s
            .start_time()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
        encrypted: s.encrypted().unwrap_or(false),
        kms_key_id: s.kms_key_id().map(str::to_owned),
        owner_id: s.owner_id().map(str::to_owned),
        description: s.description().map(str::to_owned).filter(|d| !d.is_empty()),
        state_message: s.state_message().map(str::to_owned),
        tags,
    })
}

/// Polls a new state quickly, then settles: 1, 2, 4, 8, then every 15 s. DescribeSnapshots is
/// cheap, and a snapshot of a small or barely changed volume completes in seconds.
pub fn poll_interval(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(4)).min(Duration::from_secs(15))
}

/// Waits until the snapshot is `completed` (or fails, or `timeout` passes), calling `said`
/// with each state seen so a person sees it is moving.
pub async fn wait_completed(
    clients: &Clients,
    id: &str,
    timeout: Duration,
    mut said: impl FnMut(&SnapshotInfo, Duration),
) -> Result<SnapshotInfo, SnapshotError> {
    let start = Instant::now();
    let mut attempt = 0u32;
    loop {
        let info = describe(clients, id).await?;
        match info.state.as_str() {
            "completed" => return Ok(info),
            "error" => {
                return Err(SnapshotError::Unusable {
                    id: id.to_owned(),
                    why: format!(
                        "its state is error ({}); take a new snapshot",
                        info.state_message.as_deref().unwrap_or("no message")
                    ),
                });
            }
            _ => {}
        }
        let waited = start.elapsed();
        said(&info, waited);
        if waited >= timeout {
            return Err(SnapshotError::NotCompleted {
                id: id.to_owned(),
                state: info.state,
                progress: if info.progress.is_empty() {
                    "progress unknown".into()
                } else {
                    info.progress
                },
                waited_s: waited.as_secs(),
            });
        }
        let left = timeout.saturating_sub(waited);
        tokio::time::sleep(poll_interval(attempt).min(left)).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::poll_interval;
    use std::time::Duration;

    #[test]
    fn polling_starts_fast_and_settles() {
        let waits: Vec<u64> = (0..7).map(|a| poll_interval(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 15, 15, 15]);
        assert_eq!(poll_interval(u32::MAX), Duration::from_secs(15));
    }
}
