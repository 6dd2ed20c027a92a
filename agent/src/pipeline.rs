//! The streaming core: read → SHA-256 (raw) → zstd frames on all cores → reorder → SHA-256
//! (compressed) → sink.
//!
//! Threads and why:
//! - one **reader** fills fixed-size chunks from the [`Producer`] (buffers come from a small
//!   pool, which is what bounds memory);
//! - one **raw hasher** sees every chunk in order; SHA-256 is sequential and usually the slowest
//!   stage, so it gets a thread of its own and does nothing else;
//! - **compressors** turn chunks into independent zstd frames in any order;
//! - the calling thread **assembles** frames back into source order, hashes the compressed
//!   stream, records the seek table and writes to the sink.
//!
//! Nothing here decides whether the result is final: the caller finishes or aborts the sink.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use airf_evidence::content::MemoryContent;
use airf_evidence::unreadable::BadRanges;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::hash::{Digest, Sha256};
use crate::seekable::{FrameCompressor, FrameTooLarge, SeekTable};
use crate::sink::{ImageSink, SinkError};
use crate::source::resilient::ReadError;

/// Default uncompressed size of one seekable frame (and of one read). 2 MiB reads are still
/// large sequential I/O, zstd level 1's window is smaller than that anyway, and every frame
/// buffer counts against the agent's memory bound several times over.
pub const DEFAULT_FRAME_SIZE: usize = 2 << 20;

/// Default compression threads: enough to outrun SHA-256 (the sequential ceiling) without
/// letting buffers grow with the core count of a large instance.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4)
}

/// Something that fills buffers with the evidence stream, front to back.
pub trait Producer: Send {
    /// Fills `buf` with the next bytes; returns how many (less than `buf.len()` only at the end,
    /// 0 once the stream is over).
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError>;
}

/// A producer of evidence: also knows which ranges it could not read, and (memory) what the
/// image was found to hold.
pub trait EvidenceProducer: Producer {
    /// Unreadable ranges so far.
    fn unreadable(&self) -> BadRanges;

    /// What a memory image was found to hold, once the stream is over (memory sources only;
    /// taken once).
    fn take_content(&mut self) -> Option<MemoryContent> {
        None
    }

    /// Adds what only the finished stream knows to the manifest's source facts (a snapshot's
    /// listed-block count, for one).
    fn complete_facts(&mut self, _facts: &mut airf_evidence::manifest::SourceFacts) {}
}

/// Why the producer stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The source failed beyond recovery.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The source is otherwise unusable; the message names the problem.
    #[error("{0}")]
    Source(String),
}

/// Settings of one pipeline run.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Uncompressed bytes per zstd frame.
    pub frame_size: usize,
    /// zstd level.
    pub level: i32,
    /// Compression threads.
    pub threads: usize,
}

/// Shared state the outside world may look at or poke while a pipeline runs.
#[derive(Debug, Default)]
pub struct Control {
    /// Raw bytes read so far (for progress).
    pub raw_read: AtomicU64,
    /// Compressed bytes written so far (for progress).
    pub compressed_written: AtomicU64,
    /// Set to stop at the next chunk (signals).
    pub cancel: AtomicBool,
}

/// What a successful run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOutput {
    /// Bytes read from the source (= decompressed size).
    pub raw_size: u64,
    /// SHA-256 of the raw bytes, hex.
    pub raw_sha256: String,
    /// Bytes written to the sink, seek table included.
    pub compressed_size: u64,
    /// SHA-256 of the bytes written to the sink, hex.
    pub compressed_sha256: String,
    /// Number of zstd frames (seek table entries).
    pub frames: u64,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source failed.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// zstd failed (out of memory, bad level).
    #[error("compression failed: {0}")]
    Compress(String),
    /// A frame larger than the seekable format allows.
    #[error(transparent)]
    FrameTooLarge(#[from] FrameTooLarge),
    /// Stopped by a signal.
    #[error("interrupted")]
    Cancelled,
    /// A worker thread died.
    #[error("internal error: {0} thread panicked")]
    Panicked(&'static str),
}

/// A pooled buffer; returns itself to the pool when the last user drops it.
struct Chunk {
    seq: u64,
    data: Vec<u8>,
    pool: Sender<Vec<u8>>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let _ = self.pool.send(std::mem::take(&mut self.data));
    }
}

struct Frame {
    seq: u64,
    raw_len: usize,
    bytes: Vec<u8>,
}

/// Runs the pipeline to the end of the producer, writing frames and the seek table to `sink`.
pub fn run(
    producer: &mut dyn Producer,
    sink: &mut dyn ImageSink,
    cfg: &PipelineConfig,
    control: &Control,
) -> Result<PipelineOutput, PipelineError> {
    let threads = cfg.threads.max(1);
    // Raw buffers in existence at once: one per compressor, one being read, one spare. This
    // pool is what bounds the pipeline's memory, whatever the source size.
    let pool_size = threads + 2;
    let (pool_tx, pool_rx) = bounded::<Vec<u8>>(pool_size);
    for _ in 0..pool_size {
        let _ = pool_tx.send(Vec::new());
    }
    let (hash_tx, hash_rx) = bounded::<Arc<Chunk>>(pool_size);
    let (work_tx, work_rx) = bounded::<Arc<Chunk>>(pool_size);
    // The reorder window: frames read but not yet written. Raw buffers return to the pool as
    // soon as a frame is compressed, so without this a descheduled compressor would let the
    // others run ahead and pile compressed frames up in the assembler without limit (seen:
    // 200+ MB with 4 threads on 2 cores). A ticket is taken per frame read, returned per
    // frame written.
    let window = pool_size;
    let (ticket_tx, ticket_rx) = bounded::<()>(window);
    for _ in 0..window {
        let _ = ticket_tx.send(());
    }
    // Compressed frames wait in a short queue. Their buffers go back to the compressors once
    // written, so after warm-up nothing is allocated per frame and at most `window` compressed
    // buffers ever exist.
    let (frame_tx, frame_rx) = bounded::<Result<Frame, String>>(1);
    let (spare_tx, spare_rx) = bounded::<Vec<u8>>(window);
    let stop_flag = AtomicBool::new(false);
    let stop = &stop_flag;
    let frame_size = cfg.frame_size;

    std::thread::scope(|s| {
        // The reader owns the only senders of the hash and work channels, so both close (and
        // the downstream threads finish) as soon as it returns.
        let reader = std::thread::Builder::new()
            .name("airf-read".into())
            .spawn_scoped(s, move || {
                let channels = ReaderChannels {
                    pool_rx: &pool_rx,
                    pool_tx: &pool_tx,
                    tickets: &ticket_rx,
                    hash_tx: &hash_tx,
                    work_tx: &work_tx,
                };
                read_loop(producer, frame_size, &channels, control, stop)
            });
        let hasher = std::thread::Builder::new()
            .name("airf-sha256".into())
            .spawn_scoped(s, move || hash_loop(&hash_rx));
        let mut compressors = Vec::new();
        for i in 0..threads {
            let (rx, tx, spare) = (work_rx.clone(), frame_tx.clone(), spare_rx.clone());
            let level = cfg.level;
            compressors.push(
                std::thread::Builder::new()
                    .name(format!("airf-zstd-{i}"))
                    .spawn_scoped(s, move || compress_loop(level, &rx, &tx, &spare)),
            );
        }
        drop((frame_tx, work_rx, spare_rx));

        let assembled = assemble(&frame_rx, &spare_tx, &ticket_tx, sink, control);
        if assembled.is_err() {
            stop_flag.store(true, Ordering::SeqCst);
        }
        drop(frame_rx);
        let read_result = match reader {
            Ok(h) => h.join().map_err(|_| PipelineError::Panicked("reader"))?,
            Err(_) => Err(PipelineError::Panicked("reader")),
        };
        for c in compressors.into_iter().flatten() {
            let _ = c.join();
        }
        let raw = match hasher {
            Ok(h) => h.join().map_err(|_| PipelineError::Panicked("hasher"))?,
            Err(_) => return Err(PipelineError::Panicked("hasher")),
        };
        // The reader's verdict comes first: a source failure ends the frame stream early, which
        // the assembler alone cannot tell from a normal end.
        read_result?;
        let (mut compressed_hash, table, compressed_size) = assembled?;
        let tail = table.encode()?;
        sink.write(&tail)?;
        compressed_hash.update(&tail);
        let compressed_size = compressed_size + tail.len() as u64;
        control
            .compressed_written
            .store(compressed_size, Ordering::Relaxed);
        Ok(PipelineOutput {
            raw_size: raw.1,
            raw_sha256: hex::encode(raw.0),
            compressed_size,
            compressed_sha256: hex::encode(compressed_hash.finalize()),
            frames: table.len() as u64,
        })
    })
}

/// Waits for an item from `rx` (a pool buffer or a window ticket) while watching for cancel
/// and stop; None when the pipeline is stopping or the other side is gone.
fn wait_for<T>(
    rx: &Receiver<T>,
    control: &Control,
    stop: &AtomicBool,
) -> Result<Option<T>, PipelineError> {
    loop {
        if control.cancel.load(Ordering::SeqCst) {
            return Err(PipelineError::Cancelled);
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(item) => return Ok(Some(item)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
        }
    }
}

/// The reader's side of the pipeline's channels.
struct ReaderChannels<'a> {
    pool_rx: &'a Receiver<Vec<u8>>,
    pool_tx: &'a Sender<Vec<u8>>,
    tickets: &'a Receiver<()>,
    hash_tx: &'a Sender<Arc<Chunk>>,
    work_tx: &'a Sender<Arc<Chunk>>,
}

fn read_loop(
    producer: &mut dyn Producer,
    frame_size: usize,
    ch: &ReaderChannels<'_>,
    control: &Control,
    stop: &AtomicBool,
) -> Result<(), PipelineError> {
    for seq in 0.. {
        // A ticket first: it keeps the reader within the reorder window of the assembler.
        if wait_for(ch.tickets, control, stop)?.is_none() {
            return Ok(());
        }
        let Some(mut data) = wait_for(ch.pool_rx, control, stop)? else {
            return Ok(());
        };
        data.resize(frame_size, 0);
        let n = producer.fill(&mut data)?;
        if n == 0 {
            let _ = ch.pool_tx.send(data);
            return Ok(());
        }
        data.truncate(n);
        control.raw_read.fetch_add(n as u64, Ordering::Relaxed);
        let chunk = Arc::new(Chunk {
            seq,
            data,
            pool: ch.pool_tx.clone(),
        });
        if ch.hash_tx.send(Arc::clone(&chunk)).is_err() || ch.work_tx.send(chunk).is_err() {
            return Ok(());
        }
        if n < frame_size {
            return Ok(());
        }
    }
    Ok(())
}

fn hash_loop(rx: &Receiver<Arc<Chunk>>) -> (Digest, u64) {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    for chunk in rx {
        hasher.update(&chunk.data);
        total += chunk.data.len() as u64;
    }
    (hasher.finalize(), total)
}

fn compress_loop(
    level: i32,
    rx: &Receiver<Arc<Chunk>>,
    tx: &Sender<Result<Frame, String>>,
    spare: &Receiver<Vec<u8>>,
) {
    let mut compressor = match FrameCompressor::new(level) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Err(e.to_string()));
            return;
        }
    };
    for chunk in rx {
        let mut out = spare.try_recv().unwrap_or_default();
        let frame = compressor
            .compress_into(&chunk.data, &mut out)
            .map(|()| Frame {
                seq: chunk.seq,
                raw_len: chunk.data.len(),
                bytes: out,
            })
            .map_err(|e| e.to_string());
        drop(chunk);
        if tx.send(frame).is_err() {
            return;
        }
    }
}

fn assemble(
    rx: &Receiver<Result<Frame, String>>,
    spare: &Sender<Vec<u8>>,
    tickets: &Sender<()>,
    sink: &mut dyn ImageSink,
    control: &Control,
) -> Result<(Sha256, SeekTable, u64), PipelineError> {
    let mut hasher = Sha256::new();
    let mut table = SeekTable::default();
    let mut pending: BTreeMap<u64, Frame> = BTreeMap::new();
    let mut next = 0u64;
    let mut written = 0u64;
    for frame in rx {
        let frame = frame.map_err(PipelineError::Compress)?;
        pending.insert(frame.seq, frame);
        while let Some(frame) = pending.remove(&next) {
            sink.write(&frame.bytes)?;
            hasher.update(&frame.bytes);
            table.push(frame.bytes.len(), frame.raw_len)?;
            written += frame.bytes.len() as u64;
            control.compressed_written.store(written, Ordering::Relaxed);
            let _ = spare.try_send(frame.bytes);
            let _ = tickets.try_send(());
            next += 1;
        }
    }
    Ok((hasher, table, written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemorySink;
    use sha2::Digest;
    use std::io::Read;

    /// Produces `data` in whatever sizes the pipeline asks for.
    struct SliceProducer<'a>(&'a [u8]);

    impl Producer for SliceProducer<'_> {
        fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
            let n = buf.len().min(self.0.len());
            let (head, rest) = self.0.split_at(n);
            buf[..n].copy_from_slice(head);
            self.0 = rest;
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7) ^ (i >> 9)) as u8).collect()
    }

    fn cfg(threads: usize) -> PipelineConfig {
        PipelineConfig {
            frame_size: 64 * 1024,
            level: 1,
            threads,
        }
    }

    #[test]
    fn output_decompresses_to_input_and_hashes_match() -> Result<(), Box<dyn std::error::Error>> {
        for (len, threads) in [(0usize, 1usize), (1, 2), (64 * 1024, 3), (1_000_003, 4)] {
            let input = data(len);
            let mut sink = MemorySink::default();
            let out = run(
                &mut SliceProducer(&input),
                &mut sink,
                &cfg(threads),
                &Control::default(),
            )?;
            let mut restored = Vec::new();
            zstd::stream::read::Decoder::new(sink.bytes.as_slice())?.read_to_end(&mut restored)?;
            assert_eq!(restored, input);
            assert_eq!(out.raw_size, len as u64);
            assert_eq!(out.raw_sha256, hex::encode(sha2::Sha256::digest(&input)));
            assert_eq!(out.compressed_size, sink.bytes.len() as u64);
            assert_eq!(
                out.compressed_sha256,
                hex::encode(sha2::Sha256::digest(&sink.bytes))
            );
            assert_eq!(out.frames, len.div_ceil(64 * 1024) as u64);
        }
        Ok(())
    }

    #[test]
    fn source_failure_is_reported_not_finalized() {
        struct Failing(u32);
        impl Producer for Failing {
            fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
                self.0 += 1;
                if self.0 > 3 {
                    return Err(ProduceError::Source("device vanished".into()));
                }
                buf.fill(1);
                Ok(buf.len())
            }
        }
        let mut sink = MemorySink::default();
        let err = run(&mut Failing(0), &mut sink, &cfg(2), &Control::default());
        assert!(matches!(err, Err(PipelineError::Produce(_))));
        // No seek table was written: the stream is visibly incomplete.
        assert!(
            !sink
                .bytes
                .ends_with(&crate::seekable::SEEKABLE_MAGIC.to_le_bytes())
        );
    }

    #[test]
    fn sink_failure_stops_the_reader() {
        struct Endless;
        impl Producer for Endless {
            fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
                buf.fill(3);
                Ok(buf.len())
            }
        }
        let mut sink = MemorySink::failing_after(5);
        let err = run(&mut Endless, &mut sink, &cfg(2), &Control::default());
        assert!(matches!(err, Err(PipelineError::Sink(_))));
    }

    #[test]
    fn cancel_stops_an_endless_source() {
        struct Endless;
        impl Producer for Endless {
            fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
                buf.fill(3);
                Ok(buf.len())
            }
        }
        let control = Control::default();
        control.cancel.store(true, Ordering::SeqCst);
        let err = run(&mut Endless, &mut MemorySink::default(), &cfg(2), &control);
        assert!(matches!(err, Err(PipelineError::Cancelled)));
    }

    /// However the compressors are scheduled, the reader never gets more than the reorder
    /// window ahead of the sink: that is what bounds compressed frames waiting for a late one.
    #[test]
    fn reader_stays_within_the_reorder_window() {
        use std::sync::atomic::AtomicUsize;

        struct Counted {
            left: usize,
            read: usize,
            written: Arc<AtomicUsize>,
            widest: usize,
        }
        impl Producer for Counted {
            fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
                if self.left == 0 {
                    return Ok(0);
                }
                self.left -= 1;
                self.read += 1;
                let gap = self.read - self.written.load(Ordering::SeqCst);
                self.widest = self.widest.max(gap);
                // Frames of very different cost, so compressors finish out of order.
                if self.read.is_multiple_of(3) {
                    buf.fill(0);
                } else {
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = ((i * 131 + self.read * 7) ^ (i >> 5)) as u8;
                    }
                }
                Ok(buf.len())
            }
        }
        struct CountingSink(Arc<AtomicUsize>);
        impl ImageSink for CountingSink {
            fn write(&mut self, _: &[u8]) -> Result<(), SinkError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            fn finish(&mut self) -> Result<crate::sink::StoredObject, SinkError> {
                Err(SinkError::Injected("not used".into()))
            }
            fn abort(&mut self) -> crate::sink::AbortReport {
                crate::sink::AbortReport {
                    clean: true,
                    detail: String::new(),
                }
            }
        }
        let threads = 8;
        let written = Arc::new(AtomicUsize::new(0));
        let mut producer = Counted {
            left: 400,
            read: 0,
            written: Arc::clone(&written),
            widest: 0,
        };
        let cfg = PipelineConfig {
            frame_size: 64 * 1024,
            level: 9,
            threads,
        };
        let out = run(
            &mut producer,
            &mut CountingSink(written),
            &cfg,
            &Control::default(),
        );
        assert!(out.is_ok_and(|o| o.frames == 400));
        assert!(
            producer.widest <= threads + 2,
            "reader ran {} frames ahead of the sink",
            producer.widest
        );
    }
}
