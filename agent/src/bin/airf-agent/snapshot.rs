//! `airf-agent snapshot`: acquire EBS snapshots through the EBS direct APIs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use airf_agent::acquire::{Evidence, acquire};
use airf_agent::report::{SourceReport, Status};
use airf_agent::snapshot::blocks::{BlockLister, changed_blocks};
use airf_agent::snapshot::clients::{self, Clients};
use airf_agent::snapshot::describe::{SnapshotInfo, wait_completed};
use airf_agent::snapshot::{MAX_BLOCK_RATE, ReadSettings, SnapshotError, reader};
use airf_evidence::EvidenceKind;
use airf_evidence::manifest::SourceFacts;
use airf_evidence::snapshot::{BlockReads, SnapshotFacts};
use clap::Args;

use crate::common::{AcquireArgs, Session, say_outcome};

/// The tag the controller puts on the snapshots it takes, naming their instance.
const INSTANCE_TAG: &str = "airf:instance";

#[derive(Debug, Args)]
#[command(
    after_help = "Reads completed EBS snapshots block by block over HTTPS (ListSnapshotBlocks, \
GetSnapshotBlock) and stores each as <snapshot-id>.raw.zst: the whole volume, unwritten blocks as zeros, \
every block checked against the SHA-256 the service sends. Needs ec2:DescribeSnapshots, \
ebs:ListSnapshotBlocks and ebs:GetSnapshotBlock (and kms:Decrypt through EC2 for an encrypted \
snapshot), in the snapshot's account: give --role-arn to read it there."
)]
pub struct SnapshotArgs {
    /// EBS snapshots to acquire (snap-…), each as one disk image.
    #[arg(required = true, value_name = "SNAPSHOT_ID")]
    pub snapshots: Vec<String>,
    /// Role to assume for reading (the member account's snapshot reader), e.g.
    /// arn:aws:iam::111122223333:role/AirfSnapshotReader.
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// Region of the snapshots (default: AWS_REGION, the profile, or the instance's region).
    #[arg(long, value_name = "REGION")]
    pub snapshot_region: Option<String>,
    /// Instance id to file the evidence under (default: the snapshot's airf:instance tag, else
    /// its volume id).
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// An earlier snapshot of the same volume (e.g. a nightly backup): the manifest lists the
    /// blocks changed since then (ListChangedBlocks). One snapshot only.
    #[arg(long, value_name = "SNAPSHOT_ID")]
    pub baseline: Option<String>,
    /// Seconds to wait for a pending snapshot to complete.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub wait_timeout: u64,
    /// Concurrent GetSnapshotBlock requests (each holds one 512 KiB block in memory).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=256), value_name = "N")]
    pub block_requests: u32,
    /// GetSnapshotBlock requests per second per snapshot (the service allows 1,000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BLOCK_RATE)), value_name = "N")]
    pub max_block_rate: u32,
    #[command(flatten)]
    pub acquire: AcquireArgs,
}

/// `snap-` and 8 or 17 hex digits, as EC2 issues them.
fn check_snapshot_id(id: &str) -> Result<(), String> {
    let hex = id.strip_prefix("snap-").unwrap_or("");
    if matches!(hex.len(), 8 | 17)
        && hex
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a snapshot id (snap- and 8 or 17 lowercase hex digits)"
        ))
    }
}

fn check_args(args: &SnapshotArgs) -> Result<(), String> {
    for id in args.snapshots.iter().chain(args.baseline.iter()) {
        check_snapshot_id(id)?;
    }
    for (i, id) in args.snapshots.iter().enumerate() {
        if args.snapshots.iter().skip(i + 1).any(|o| o == id) {
            return Err(format!("{id} is given twice: give each snapshot once"));
        }
    }
    if let Some(b) = &args.baseline {
        if args.snapshots.len() != 1 {
            return Err(
                "--baseline compares one snapshot with an earlier one: give exactly one snapshot"
                    .into(),
            );
        }
        if args.snapshots.contains(b) {
            return Err(format!(
                "--baseline {b} is the snapshot being acquired: give an earlier snapshot of the same volume"
            ));
        }
    }
    if let Some(i) = &args.instance
        && (i.is_empty()
            || i.len() > 64
            || !i
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            || i.starts_with('.'))
    {
        return Err(format!(
            "--instance {i:?} must be an instance id or a name of 1-64 of A-Z a-z 0-9 . _ - (it becomes a folder)"
        ));
    }
    if let Some(arn) = &args.role_arn
        && !(arn.starts_with("arn:") && arn.contains(":iam::") && arn.contains(":role/"))
    {
        return Err(format!(
            "--role-arn {arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
        ));
    }
    if args.wait_timeout == 0 {
        return Err(
            "--wait-timeout 0 would refuse every pending snapshot at once: give seconds, e.g. 3600"
                .into(),
        );
    }
    Ok(())
}

/// A snapshot ready to read: described, completed, first listing page in hand.
struct Ready {
    info: SnapshotInfo,
    lister: BlockLister,
    first_page: Vec<airf_agent::snapshot::blocks::ListedBlock>,
    facts: SnapshotFacts,
}

pub fn run(args: SnapshotArgs) -> i32 {
    let session = Session::new("snapshot", &args.acquire);
    if session.to_stdout() && args.snapshots.len() > 1 {
        return session.usage("--to - takes exactly one snapshot (stdout holds one image)".into());
    }
    if let Err(e) = check_args(&args) {
        return session.usage(e);
    }
    let started = match session.start() {
        Ok(s) => s,
        Err(e) => return session.refuse(e),
    };
    let clients = started.rt.block_on(clients::build(
        args.snapshot_region.clone(),
        args.role_arn.as_deref(),
        &clients::session_name(session.case()),
    ));
    let settings = ReadSettings {
        concurrency: args.block_requests,
        max_rate: args.max_block_rate,
        wait_timeout: Duration::from_secs(args.wait_timeout),
    };
    // Describe, wait for and list every snapshot first: a typo or a missing permission fails
    // before anything is stored.
    let mut ready = Vec::new();
    for id in &args.snapshots {
        let prepared = started.rt.block_on(prepare(
            &clients,
            id,
            args.baseline.as_deref(),
            &settings,
            session.progress_wanted(),
            &started.control,
        ));
        match prepared {
            Ok(r) => ready.push(r),
            Err(e) => return session.fail(e.to_string()),
        }
    }
    let folder_name = args
        .instance
        .clone()
        .or_else(|| {
            ready
                .iter()
                .find_map(|r| r.info.tag(INSTANCE_TAG).map(str::to_owned))
        })
        .or_else(|| ready.first().and_then(|r| r.info.volume_id.clone()))
        .unwrap_or_else(|| "snapshots".to_owned());
    let host = started.rt.block_on(airf_agent::host::gather());
    let set = match session.evidence_set_named(&started, &folder_name) {
        Ok(s) => s,
        Err(e) => return session.usage(e),
    };
    let acquire_settings = session.acquire_settings(started.frame_size);
    let mut reports = Vec::new();
    let mut queue = ready.into_iter();
    while let Some(r) = queue.next() {
        if started.control.cancel.load(Ordering::SeqCst) {
            reports.push(not_started(&r.info.id));
            reports.extend(queue.by_ref().map(|r| not_started(&r.info.id)));
            break;
        }
        let id = r.info.id.clone();
        let mut facts = r.facts;
        facts.instance_id = Some(folder_name.clone());
        let size = facts.volume_size;
        let mut producer = match reader::start(
            started.rt.handle(),
            clients.clone(),
            &id,
            r.lister,
            r.first_page,
            &settings,
        ) {
            Ok(p) => p,
            Err(e) => {
                let mut rep = SourceReport::failed(id.clone());
                rep.error = Some(e.to_string());
                say_outcome(&rep);
                reports.push(rep);
                continue;
            }
        };
        let evidence = Evidence {
            label: id.clone(),
            kind: EvidenceKind::Disk,
            stem: id.clone(),
            size_hint: Some(size),
            facts: SourceFacts::Snapshot(Box::new(facts)),
        };
        let rep = acquire(
            &mut producer,
            evidence,
            &set,
            &host,
            &acquire_settings,
            &started.control,
        );
        drop(producer);
        say_outcome(&rep);
        reports.push(rep);
    }
    set.remove_empty_folders();
    session.finish(Some(&set), reports, Vec::new(), Some(&started.signal))
}

async fn prepare(
    clients: &Clients,
    id: &str,
    baseline: Option<&str>,
    settings: &ReadSettings,
    progress: bool,
    control: &airf_agent::pipeline::Control,
) -> Result<Ready, SnapshotError> {
    let mut last_said = String::new();
    let info = wait_completed(clients, id, settings.wait_timeout, |info, waited| {
        let line = format!("{} {}", info.state, info.progress);
        if progress && line != last_said {
            eprintln!(
                "airf-agent: {id} is {} ({}); waited {} s of {} s for it to complete",
                info.state,
                if info.progress.is_empty() {
                    "progress unknown"
                } else {
                    &info.progress
                },
                waited.as_secs(),
                settings.wait_timeout.as_secs()
            );
            last_said = line;
        }
    })
    .await?;
    if control.cancel.load(Ordering::SeqCst) {
        return Err(SnapshotError::Unusable {
            id: id.to_owned(),
            why: "the agent was interrupted before reading it".into(),
        });
    }
    let mut lister = BlockLister::new(clients.clone(), id);
    let first_page = lister.next_page().await?.unwrap_or_default();
    let layout = lister.layout().ok_or_else(|| SnapshotError::BadResponse {
        id: id.to_owned(),
        why: "ListSnapshotBlocks returned no volume geometry".into(),
    })?;
    if let Some(gib) = info.volume_size_gib
        && gib != layout.volume_size_gib
    {
        return Err(SnapshotError::BadResponse {
            id: id.to_owned(),
            why: format!(
                "EC2 says the volume is {gib} GiB, the EBS direct API {} GiB",
                layout.volume_size_gib
            ),
        });
    }
    let changed = match baseline {
        Some(b) => Some(changed_blocks(clients, b, id, layout).await?),
        None => None,
    };
    let facts = SnapshotFacts {
        snapshot_id: id.to_owned(),
        volume_id: info.volume_id.clone(),
        instance_id: None,
        region: clients.region.clone(),
        owner_id: info.owner_id.clone(),
        start_time: info.start_time,
        description: info.description.clone(),
        encrypted: info.encrypted,
        kms_key_id: info.kms_key_id.clone(),
        tags: info.tags.clone(),
        volume_size_gib: layout.volume_size_gib,
        volume_size: layout.volume_bytes(),
        block_size: layout.block_size,
        listed_blocks: lister.listed,
        reads: BlockReads::default(),
        baseline: changed,
    };
    Ok(Ready {
        info,
        lister,
        first_page,
        facts,
    })
}

/// The report of a snapshot a signal kept from starting: nothing of it was stored.
fn not_started(id: &str) -> SourceReport {
    let mut r = SourceReport::failed(id.to_owned());
    r.status = Status::Interrupted;
    r.error = Some("not started: the agent was interrupted before this snapshot".into());
    r
}

#[cfg(test)]
mod tests {
    use super::check_snapshot_id;

    #[test]
    fn snapshot_ids() {
        assert!(check_snapshot_id("snap-0123456789abcdef0").is_ok());
        assert!(check_snapshot_id("snap-12345678").is_ok());
        for bad in [
            "snap-",
            "snap-XYZ",
            "vol-0123456789abcdef0",
            "snap-0123456789ABCDEF0",
            "snap-../../x",
            "",
        ] {
            assert!(check_snapshot_id(bad).is_err(), "{bad}");
        }
    }
}
