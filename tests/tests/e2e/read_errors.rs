//! A disk with unreadable sectors, acquired into Garage through the real pipeline: the image
//! completes, bad sectors are zero-filled and listed exactly, and the run reports "completed
//! with read errors" with exit status 3. (The same on a real kernel block device with qemu
//! blkdebug is in the VM tests.)

use std::sync::Arc;

use airf_agent::acquire::{AcquireSettings, Evidence, acquire};
use airf_agent::destination::{DestSpec, EvidenceSet, UploadSettings};
use airf_agent::host::HostFacts;
use airf_agent::pipeline::{Control, PipelineConfig};
use airf_agent::progress::ProgressMode;
use airf_agent::report::{Status, exit, human_summary, run_report};
use airf_agent::source::block_device::{DiskFacts, DiskKind};
use airf_agent::source::disk_producer::DiskProducer;
use airf_agent::source::faulty::FaultyDisk;
use airf_agent::source::resilient::ChunkReader;
use airf_e2e::{S3Server, ServerKind, sha256, zstd_decompress};
use anyhow::{Context, Result, ensure};

const SECTOR: usize = 512;

fn client(server: &S3Server, rt: &tokio::runtime::Runtime) -> aws_sdk_s3::Client {
    let get = |k: &str| {
        server
            .env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let creds = aws_sdk_s3::config::Credentials::new(
        get("AWS_ACCESS_KEY_ID"),
        get("AWS_SECRET_ACCESS_KEY"),
        None,
        None,
        "test",
    );
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(get("AWS_REGION")))
        .endpoint_url(get("AWS_ENDPOINT_URL"))
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    let _guard = rt.enter();
    aws_sdk_s3::Client::from_conf(conf)
}

#[test]
fn unreadable_sectors_are_zero_filled_listed_and_reported() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let size = 24usize << 20;
    let data: Vec<u8> = (0..size)
        .map(|i| (i % 253) as u8 ^ (i >> 16) as u8)
        .collect();
    // Sectors in three frames, including a run of four and a frame's very last sector.
    let bad: Vec<u64> = vec![100, 8191, 8192, 8193, 8194, 20_000, 49_151];
    let disk = FaultyDisk {
        data: data.clone(),
        sector: SECTOR,
        bad_sectors: bad.clone(),
    };
    let facts = DiskFacts {
        path: "/dev/faulty".into(),
        canonical_path: "/dev/faulty".into(),
        kind: DiskKind::BlockDevice,
        size: size as u64,
        sector_size: SECTOR as u32,
        device_number: None,
        model: Some("EIO injector".into()),
        serial: None,
        ebs_volume_id: None,
        loop_backing_file: None,
    };
    let set = EvidenceSet::new(
        DestSpec::S3 {
            bucket: server.bucket.clone(),
            prefix: "eio".into(),
        },
        Some((client(&server, &rt), rt.handle().clone())),
        UploadSettings {
            concurrency: 2,
            sse_kms_key_id: None,
            abort_deadline: std::time::Duration::from_secs(5),
        },
        "IR-EIO",
        "host",
        time::OffsetDateTime::now_utc(),
    )?;
    let settings = AcquireSettings {
        case: "IR-EIO".into(),
        pipeline: PipelineConfig {
            frame_size: 4 << 20,
            level: 1,
            threads: 2,
        },
        part_size: Some(5 << 20),
        progress: ProgressMode::Off,
    };
    let mut producer = DiskProducer::new(
        ChunkReader::new(disk, "/dev/faulty", size as u64, SECTOR),
        None,
    );
    let host = HostFacts {
        hostname: "host".into(),
        kernel_release: "test".into(),
        ..HostFacts::default()
    };
    let report = acquire(
        &mut producer,
        Evidence::disk("faulty", facts),
        &set,
        &host,
        &settings,
        &Arc::new(Control::default()),
    );
    ensure!(
        report.status == Status::CompletedWithReadErrors,
        "{report:?}"
    );
    ensure!(report.unreadable_bytes == (bad.len() * SECTOR) as u64);
    let run = run_report(
        "disk",
        "IR-EIO",
        &set.folder,
        vec![report.clone()],
        Vec::new(),
        1.0,
        None,
    );
    ensure!(run.exit_code == exit::READ_ERRORS && run.exit_code == 3);
    let summary = human_summary(&run);
    ensure!(summary.contains("completed with read errors"), "{summary}");

    let manifest_key = report
        .manifest
        .as_ref()
        .and_then(|m| m.key.clone())
        .context("manifest stored")?;
    let manifest: serde_json::Value = serde_json::from_slice(&server.get(&manifest_key)?)?;
    ensure!(manifest["status"] == "completed_with_read_errors");
    let ranges: Vec<(u64, u64, i64)> = manifest["unreadable"]["ranges"]
        .as_array()
        .context("ranges")?
        .iter()
        .map(|r| {
            (
                r["offset"].as_u64().unwrap(),
                r["length"].as_u64().unwrap(),
                r["errno"].as_i64().unwrap(),
            )
        })
        .collect();
    let s = SECTOR as u64;
    ensure!(
        ranges
            == vec![
                (100 * s, s, 5),
                (8191 * s, 4 * s, 5),
                (20_000 * s, s, 5),
                (49_151 * s, s, 5)
            ],
        "ranges: {ranges:?}"
    );

    let image_key = report
        .image
        .as_ref()
        .and_then(|i| i.key.clone())
        .context("image")?;
    let raw = zstd_decompress(&server.get(&image_key)?)?;
    let mut expected = data;
    for sector in &bad {
        let at = *sector as usize * SECTOR;
        expected[at..at + SECTOR].fill(0);
    }
    ensure!(
        raw == expected,
        "image differs from the source with bad sectors zeroed"
    );
    ensure!(manifest["raw"]["sha256"] == sha256(&expected).as_str());
    ensure!(server.open_uploads()?.is_empty());
    Ok(())
}
