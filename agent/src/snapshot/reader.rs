//! Reading a snapshot's blocks: `GetSnapshotBlock` with bounded concurrency and a request-rate
//! ceiling, each block checked against the SHA-256 the service sends, delivered in volume
//! order to the pipeline as one whole-volume stream in which unlisted blocks are zeros.
//!
//! Memory is bounded by the settings, not the volume: at most `concurrency` blocks are being
//! fetched, [`CHANNEL_BLOCKS`] wait for the pipeline, and one is being copied out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use airf_evidence::manifest::SourceFacts;
use airf_evidence::snapshot::BlockReads;
use airf_evidence::unreadable::BadRanges;
use aws_sdk_ebs::types::ChecksumAlgorithm;
use base64::Engine;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use super::blocks::{BlockLister, Layout, ListedBlock};
use super::clients::{Clients, explain, is_transient};
use super::{ReadSettings, SnapshotError};
use crate::pipeline::{EvidenceProducer, ProduceError, Producer};

/// Verified blocks waiting for the pipeline.
pub const CHANNEL_BLOCKS: usize = 4;

/// Reads of one block whose bytes disagree with `x-amz-Checksum` before the block fails.
pub const CHECKSUM_ATTEMPTS: u32 = 3;

/// Rounds of our own retry (each after the SDK's own attempts) for throttling, server and
/// network errors, with 1, 2, 4, 8, 16 s pauses: the service's throttling is per second, so
/// half a minute rides out a burst.
pub const TRANSIENT_ROUNDS: u32 = 5;

/// One verified block.
#[derive(Debug)]
struct Block {
    index: u64,
    data: Bytes,
}

#[derive(Debug)]
enum Msg {
    Block(Block),
    Failed(SnapshotError),
    End,
}

/// Counters a reviewer can compare with CloudTrail.
#[derive(Debug, Default)]
struct Counters {
    blocks_read: AtomicU64,
    checksum_retries: AtomicU64,
    request_retries: AtomicU64,
    list_pages: AtomicU64,
    listed: AtomicU64,
}

/// Spaces requests at least `1/rate` apart.
#[derive(Debug)]
struct Limiter {
    interval: Duration,
    next: std::sync::Mutex<tokio::time::Instant>,
}

impl Limiter {
    fn new(rate: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate.max(1),
            next: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self) {
        let at = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

struct Fetch {
    clients: Clients,
    id: String,
    block_size: u32,
    limiter: Limiter,
    counters: Arc<Counters>,
}

/// The pipeline's view of a snapshot: the whole volume, front to back.
#[derive(Debug)]
pub struct SnapshotProducer {
    rx: tokio::sync::mpsc::Receiver<Msg>,
    task: tokio::task::JoinHandle<()>,
    layout: Layout,
    pos: u64,
    pending: Option<Block>,
    ended: bool,
    counters: Arc<Counters>,
    settings: ReadSettings,
}

/// Starts reading snapshot `id` on `rt`: `lister` has already fetched `first_page` (which is
/// how the geometry is known before the pipeline starts).
pub fn start(
    rt: &tokio::runtime::Handle,
    clients: Clients,
    id: &str,
    lister: BlockLister,
    first_page: Vec<ListedBlock>,
    settings: &ReadSettings,
) -> Result<SnapshotProducer, SnapshotError> {
    let layout = lister.layout().ok_or_else(|| SnapshotError::BadResponse {
        id: id.to_owned(),
        why: "no geometry before the first block was read".into(),
    })?;
    let counters = Arc::new(Counters::default());
    counters.list_pages.store(lister.pages, Ordering::Relaxed);
    counters.listed.store(lister.listed, Ordering::Relaxed);
    let fetch = Arc::new(Fetch {
        clients,
        id: id.to_owned(),
        block_size: layout.block_size,
        limiter: Limiter::new(settings.max_rate.min(super::MAX_BLOCK_RATE)),
        counters: Arc::clone(&counters),
    });
    let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_BLOCKS);
    let concurrency = usize::try_from(settings.concurrency.max(1)).unwrap_or(1);
    let list_counters = Arc::clone(&counters);
    let task = rt.spawn(async move {
        // Pages are fetched only as the reader reaches them.
        let pages = stream::unfold(Some((lister, Some(first_page))), move |state| {
            let counters = Arc::clone(&list_counters);
            async move {
                let (mut lister, first) = state?;
                let page = match first {
                    Some(p) => Ok(Some(p)),
                    None => lister.next_page().await,
                };
                counters.list_pages.store(lister.pages, Ordering::Relaxed);
                counters.listed.store(lister.listed, Ordering::Relaxed);
                match page {
                    Ok(Some(p)) => Some((Ok(p), Some((lister, None)))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            }
        });
        let blocks = pages
            .flat_map(|page| match page {
                Ok(p) => stream::iter(p.into_iter().map(Ok)).left_stream(),
                Err(e) => stream::once(async move { Err(e) }).right_stream(),
            })
            .map(|listed| {
                let fetch = Arc::clone(&fetch);
                async move { fetch_block(&fetch, listed?).await }
            })
            .buffered(concurrency);
        futures_util::pin_mut!(blocks);
        while let Some(r) = blocks.next().await {
            let (msg, last) = match r {
                Ok(b) => (Msg::Block(b), false),
                Err(e) => (Msg::Failed(e), true),
            };
            // A closed channel means the pipeline stopped (cancelled or failed): stop reading.
            if tx.send(msg).await.is_err() || last {
                return;
            }
        }
        let _ = tx.send(Msg::End).await;
    });
    Ok(SnapshotProducer {
        rx,
        task,
        layout,
        pos: 0,
        pending: None,
        ended: false,
        counters,
        settings: settings.clone(),
    })
}

/// One block, verified: re-read when its bytes disagree with its checksum, retried after
/// throttling or server errors the SDK gave up on.
async fn fetch_block(f: &Fetch, listed: ListedBlock) -> Result<Block, SnapshotError> {
    let index = i32::try_from(listed.index).map_err(|_| SnapshotError::BadResponse {
        id: f.id.clone(),
        why: format!("block index {} does not fit the API", listed.index),
    })?;
    let offset = listed.index * u64::from(f.block_size);
    let what = format!("{} block {}", f.id, listed.index);
    let mut mismatches = 0u32;
    let mut rounds = 0u32;
    loop {
        f.limiter.wait().await;
        let sent = f
            .clients
            .ebs
            .get_snapshot_block()
            .snapshot_id(&f.id)
            .block_index(index)
            .block_token(&listed.token)
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) if is_transient(&e) && rounds < TRANSIENT_ROUNDS => {
                rounds += 1;
                f.counters.request_retries.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "{what}: {}; retrying",
                    explain("ebs:GetSnapshotBlock", &what, &e)
                );
                tokio::time::sleep(Duration::from_secs(1 << (rounds - 1))).await;
                continue;
            }
            Err(e) => {
                return Err(SnapshotError::Api(explain(
                    "ebs:GetSnapshotBlock",
                    &what,
                    &e,
                )));
            }
        };
        if out.checksum_algorithm() != Some(&ChecksumAlgorithm::ChecksumAlgorithmSha256) {
            return Err(SnapshotError::BadResponse {
                id: f.id.clone(),
                why: format!(
                    "block {} came with checksum algorithm {:?}, not SHA256: it cannot be verified",
                    listed.index,
                    out.checksum_algorithm().map(ChecksumAlgorithm::as_str)
                ),
            });
        }
        let want = out.checksum().unwrap_or("").to_owned();
        let declared = out.data_length();
        let data = match out.block_data.collect().await {
            Ok(d) => d.into_bytes(),
            Err(e) if rounds < TRANSIENT_ROUNDS => {
                rounds += 1;
                f.counters.request_retries.fetch_add(1, Ordering::Relaxed);
                tracing::info!("{what}: the block's body broke off ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1 << (rounds - 1))).await;
                continue;
            }
            Err(e) => {
                return Err(SnapshotError::Api(format!(
                    "ebs:GetSnapshotBlock on {what} failed: the block's body broke off ({e}) on every retry; check the network"
                )));
            }
        };
        let got =
            base64::engine::general_purpose::STANDARD.encode(crate::hash::Sha256::digest(&data));
        let whole = data.len() == f.block_size as usize
            && declared.and_then(|d| usize::try_from(d).ok()) == Some(data.len());
        if whole && got == want {
            f.counters.blocks_read.fetch_add(1, Ordering::Relaxed);
            return Ok(Block {
                index: listed.index,
                data,
            });
        }
        mismatches += 1;
        if mismatches >= CHECKSUM_ATTEMPTS {
            let got = if whole {
                got
            } else {
                format!(
                    "{got} of {} bytes (x-amz-Data-Length {declared:?}, block size {})",
                    data.len(),
                    f.block_size
                )
            };
            return Err(SnapshotError::Checksum {
                id: f.id.clone(),
                index: listed.index,
                offset,
                end: offset + u64::from(f.block_size),
                got,
                want,
                attempts: mismatches,
            });
        }
        f.counters.checksum_retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "{what}: SHA-256 {got} does not match x-amz-Checksum {want}; reading it again"
        );
    }
}

impl SnapshotProducer {
    /// The volume's size: the raw image's.
    pub fn size(&self) -> u64 {
        self.layout.volume_bytes()
    }

    /// The next message, blocking the pipeline's reader thread (never a runtime thread).
    fn receive(&mut self) -> Result<(), ProduceError> {
        match self.rx.blocking_recv() {
            Some(Msg::Block(b)) => {
                self.pending = Some(b);
                Ok(())
            }
            Some(Msg::End) => {
                self.ended = true;
                Ok(())
            }
            Some(Msg::Failed(e)) => Err(ProduceError::Source(e.to_string())),
            // Without End, the reading task died: the stream is not known to be complete.
            None => Err(ProduceError::Source(
                "the block reader stopped before the end of the snapshot; nothing was stored as evidence".into(),
            )),
        }
    }
}

impl Producer for SnapshotProducer {
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
        let total = self.layout.volume_bytes();
        let bs = u64::from(self.layout.block_size);
        let want = usize::try_from(total.saturating_sub(self.pos))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let mut filled = 0usize;
        while filled < want {
            if self.pending.is_none() && !self.ended {
                self.receive()?;
            }
            let off = self.pos + filled as u64;
            let here = off / bs;
            let within = usize::try_from(off % bs).unwrap_or(0);
            let room = want - filled;
            let (n, src) = match &self.pending {
                Some(b) if b.index == here => {
                    let n = (bs as usize - within).min(room);
                    (n, b.data.get(within..within + n))
                }
                Some(b) if b.index < here => {
                    return Err(ProduceError::Source(format!(
                        "block {} arrived after block {here} was passed: blocks out of order",
                        b.index
                    )));
                }
                // A gap before the next listed block (or after the last): never written, zeros.
                Some(b) => {
                    let gap = b.index * bs - off;
                    (usize::try_from(gap).unwrap_or(usize::MAX).min(room), None)
                }
                None => (room, None),
            };
            let dst = buf
                .get_mut(filled..filled + n)
                .ok_or_else(|| ProduceError::Source("buffer arithmetic out of range".into()))?;
            match src {
                Some(s) => dst.copy_from_slice(s),
                None => dst.fill(0),
            }
            filled += n;
            if within + n == bs as usize && matches!(&self.pending, Some(b) if b.index == here) {
                self.pending = None;
            }
        }
        self.pos += filled as u64;
        // The stream is only over when the reader said so: a listing that ends early is an
        // error, not zeros.
        if self.pos == total && !self.ended {
            if self.pending.is_some() {
                return Err(ProduceError::Source(
                    "a block was delivered past the end of the volume".into(),
                ));
            }
            self.receive()?;
            if !self.ended {
                return Err(ProduceError::Source(
                    "a block was delivered past the end of the volume".into(),
                ));
            }
        }
        Ok(filled)
    }
}

impl EvidenceProducer for SnapshotProducer {
    fn unreadable(&self) -> BadRanges {
        BadRanges::default()
    }

    fn complete_facts(&mut self, facts: &mut SourceFacts) {
        if let SourceFacts::Snapshot(f) = facts {
            f.listed_blocks = self.counters.listed.load(Ordering::Relaxed);
            f.reads = BlockReads {
                blocks_read: self.counters.blocks_read.load(Ordering::Relaxed),
                checksum_retries: self.counters.checksum_retries.load(Ordering::Relaxed),
                request_retries: self.counters.request_retries.load(Ordering::Relaxed),
                list_pages: self.counters.list_pages.load(Ordering::Relaxed),
                concurrency: self.settings.concurrency,
                max_rate: self.settings.max_rate,
            };
        }
    }
}

impl Drop for SnapshotProducer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BS: u32 = 64 << 10;

    /// A producer fed by `msgs` instead of the EBS reader task, over a 1 GiB volume of `BS`
    /// blocks (only the first `blocks` are compared).
    fn producer(rt: &tokio::runtime::Runtime, msgs: Vec<Msg>) -> SnapshotProducer {
        let (tx, rx) = tokio::sync::mpsc::channel(msgs.len().max(1));
        for m in msgs {
            tx.try_send(m).unwrap();
        }
        SnapshotProducer {
            rx,
            task: rt.spawn(async {}),
            layout: Layout {
                volume_size_gib: 1,
                block_size: BS,
            },
            pos: 0,
            pending: None,
            ended: false,
            counters: Arc::new(Counters::default()),
            settings: ReadSettings {
                concurrency: 1,
                max_rate: 1,
                wait_timeout: Duration::from_secs(1),
            },
        }
    }

    fn block(index: u64) -> Msg {
        Msg::Block(Block {
            index,
            data: Bytes::from(vec![(index % 251) as u8 + 1; BS as usize]),
        })
    }

    /// Reads up to `limit` bytes (the whole stream when it is shorter) in `chunk`-sized fills.
    fn drain(
        p: &mut SnapshotProducer,
        chunk: usize,
        limit: usize,
    ) -> Result<Vec<u8>, ProduceError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        while out.len() < limit {
            let n = p.fill(&mut buf)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(out)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
        #[test]
        fn listed_blocks_land_at_their_offsets_and_the_rest_is_zeros(
            listed in proptest::collection::btree_set(0u64..1024, 0..40),
            chunk in 1usize..300_000,
        ) {
            // The first 64 MiB (1,024 blocks) of the volume: the whole of it is one test below.
            let rt = runtime();
            let mut msgs: Vec<Msg> = listed.iter().map(|&i| block(i)).collect();
            msgs.push(Msg::End);
            let mut p = producer(&rt, msgs);
            let out = drain(&mut p, chunk, 64 << 20).unwrap();
            let out = &out[..64 << 20];
            for i in [0u64, 1, 500, 1023].into_iter().chain(listed.iter().copied()) {
                let at = (i * u64::from(BS)) as usize;
                let want = if listed.contains(&i) { (i % 251) as u8 + 1 } else { 0 };
                proptest::prop_assert!(out[at..at + BS as usize].iter().all(|&b| b == want), "block {}", i);
            }
            let nonzero = out.chunks(BS as usize).filter(|c| c.iter().any(|&b| b != 0)).count();
            proptest::prop_assert_eq!(nonzero, listed.len());
        }
    }

    #[test]
    fn a_stream_without_its_end_is_not_complete() {
        let rt = runtime();
        // The reader task died after two blocks: no End, so the image must not be finished.
        let mut p = producer(&rt, vec![block(0), block(3)]);
        let err = drain(&mut p, 1 << 20, usize::MAX).unwrap_err();
        assert!(err.to_string().contains("stopped before the end"), "{err}");
    }

    #[test]
    fn the_whole_volume_is_read_and_ends_only_with_end() {
        let rt = runtime();
        let last = 16_383;
        let mut p = producer(&rt, vec![block(7), block(last), Msg::End]);
        let out = drain(&mut p, 3 << 20, usize::MAX).unwrap();
        assert_eq!(out.len(), 1 << 30);
        let at = |i: u64| (i * u64::from(BS)) as usize;
        assert!(out[at(last)..].iter().all(|&b| b == (last % 251) as u8 + 1));
        assert!(out[at(8)..at(9)].iter().all(|&b| b == 0));
        assert!(p.ended);
        // A block after the last one would be past the end of the volume.
        let mut p = producer(&rt, vec![block(last), block(last), Msg::End]);
        assert!(drain(&mut p, 3 << 20, usize::MAX).is_err());
    }

    #[test]
    fn a_failure_is_the_pipelines_error() {
        let rt = runtime();
        let fail = Msg::Failed(SnapshotError::Unusable {
            id: "snap-1".into(),
            why: "test".into(),
        });
        let mut p = producer(&rt, vec![block(0), fail]);
        let err = drain(&mut p, 1 << 20, usize::MAX).unwrap_err();
        assert!(err.to_string().contains("snap-1 cannot be read"), "{err}");
    }

    #[test]
    fn blocks_out_of_order_are_refused() {
        let rt = runtime();
        let mut p = producer(&rt, vec![block(5), block(2), Msg::End]);
        let err = drain(&mut p, 1 << 20, usize::MAX).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
    }
}
