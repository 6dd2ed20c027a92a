//! EBS snapshots planted in moto through the EBS direct APIs (StartSnapshot, PutSnapshotBlock,
//! CompleteSnapshot), from a real disk image: what `airf-agent snapshot` reads back.
//! moto's EBS is the one tests/scripts/moto_ebs.py makes AWS-like (block size, checksums,
//! paging, pending state, faults).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use aws_sdk_ebs::primitives::ByteStream;
use aws_sdk_ebs::types::{ChecksumAlgorithm, Tag};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::S3Server;

/// The EBS direct APIs' block size.
pub const BLOCK: usize = 524_288;

/// A snapshot planted in moto.
#[derive(Debug, Clone)]
pub struct Planted {
    /// `snap-…`.
    pub id: String,
    /// Block indexes written (non-zero blocks of the image).
    pub written: Vec<u64>,
}

/// EBS and EC2 clients on a moto server.
#[derive(Debug)]
pub struct Ebs {
    rt: tokio::runtime::Runtime,
    /// EBS direct APIs.
    pub ebs: aws_sdk_ebs::Client,
    /// EC2 (DescribeSnapshots).
    pub ec2: aws_sdk_ec2::Client,
}

impl Ebs {
    /// Clients on `moto` with its test credentials.
    pub fn on(moto: &S3Server) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let endpoint = moto.endpoint()?;
        let sdk = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(aws_config::Region::new(crate::emulator::REGION))
                .credentials_provider(aws_credential_types::Credentials::for_tests())
                .load(),
        );
        Ok(Self {
            ebs: aws_sdk_ebs::Client::new(&sdk),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            rt,
        })
    }

    /// Starts a snapshot of a `size_gib` volume (an incremental one on `parent`), writes every
    /// non-zero 512 KiB block of `image` (shorter images are zero-padded), and completes it
    /// unless `complete` is false (then it stays `pending` until [`Ebs::complete`]).
    pub fn plant(
        &self,
        image: &Path,
        size_gib: i64,
        tags: &[(&str, &str)],
        parent: Option<&str>,
        complete: bool,
    ) -> Result<Planted> {
        let mut f =
            std::fs::File::open(image).with_context(|| format!("open {}", image.display()))?;
        self.rt.block_on(async {
            let started = self
                .ebs
                .start_snapshot()
                .volume_size(size_gib)
                .set_parent_snapshot_id(parent.map(str::to_owned))
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                        .collect(),
                ))
                .description("planted by airf's tests")
                .send()
                .await
                .context("ebs:StartSnapshot in moto")?;
            let id = started.snapshot_id().context("no snapshot id")?.to_owned();
            let mut written = Vec::new();
            let mut buf = vec![0u8; BLOCK];
            for index in 0u64.. {
                let n = read_full(&mut f, &mut buf)?;
                if n == 0 {
                    break;
                }
                if let Some(tail) = buf.get_mut(n..) {
                    tail.fill(0);
                }
                if buf.iter().all(|&b| b == 0) {
                    continue;
                }
                self.put_block(&id, index, &buf).await?;
                written.push(index);
            }
            if complete {
                self.complete_async(&id, written.len()).await?;
            }
            Ok(Planted { id, written })
        })
    }

    /// Writes one block of an incremental snapshot that is still pending.
    pub fn write_block(&self, id: &str, index: u64, data: &[u8]) -> Result<()> {
        self.rt.block_on(self.put_block(id, index, data))
    }

    async fn put_block(&self, id: &str, index: u64, data: &[u8]) -> Result<()> {
        ensure!(data.len() == BLOCK, "a block is {BLOCK} bytes");
        let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data));
        self.ebs
            .put_snapshot_block()
            .snapshot_id(id)
            .block_index(i32::try_from(index)?)
            .block_data(ByteStream::from(data.to_vec()))
            .data_length(i32::try_from(BLOCK)?)
            .checksum(checksum)
            .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
            .send()
            .await
            .with_context(|| format!("ebs:PutSnapshotBlock {id} {index} in moto"))?;
        Ok(())
    }

    /// Completes a pending snapshot.
    pub fn complete(&self, id: &str, blocks: usize) -> Result<()> {
        self.rt.block_on(self.complete_async(id, blocks))
    }

    async fn complete_async(&self, id: &str, blocks: usize) -> Result<()> {
        self.ebs
            .complete_snapshot()
            .snapshot_id(id)
            .changed_blocks_count(i32::try_from(blocks)?)
            .send()
            .await
            .with_context(|| format!("ebs:CompleteSnapshot {id} in moto"))?;
        Ok(())
    }

    /// The snapshot's volume id, as EC2 reports it.
    pub fn volume_of(&self, id: &str) -> Result<String> {
        self.rt.block_on(async {
            let out = self
                .ec2
                .describe_snapshots()
                .snapshot_ids(id)
                .send()
                .await?;
            out.snapshots()
                .first()
                .and_then(|s| s.volume_id())
                .map(str::to_owned)
                .context("no volume id")
        })
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = f.read(buf.get_mut(n..).context("buffer")?)?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}
