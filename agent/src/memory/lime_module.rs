//! LiME as a fallback source: check the module, load it, read its dump over loopback TCP.
//!
//! Before anything is loaded the module's SHA-256 must match the one the responder gave and its
//! `.modinfo` vermagic must name the running kernel (a mismatched module is refused by the
//! kernel at best and oopses it at worst). The module is loaded with `finit_module` and
//! `path=tcp:<port> localhostonly=1 format=lime timeout=0`; its init blocks until the dump is
//! sent, so it runs on a thread of its own while this side connects and reads.
//!
//! Every parameter is set on purpose, because LiME's defaults are part of the evidence:
//! `timeout` (ms, default 1000) makes LiME give up on a range when one page write takes
//! longer, and silently write zeros for the rest of it. Over TCP a write takes as long as the
//! upload pushes back (a slow S3 endpoint, a busy host), so the default turns backpressure
//! into a hollow image. `timeout=0` disables the skip: LiME waits for the reader, and the
//! agent's own stall timeout bounds the wait. LiME can stall or stop early
//! over TCP: every range header is checked against `/proc/iomem` and against the bytes that
//! follow, a stalled stream times out, and an early end is an error, never a complete image.
//! The module is always unloaded at the end, also on failure.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use airf_evidence::memory::LimeModuleFacts;
use goblin::elf::Elf;
use nix::kmod::{DeleteModuleFlags, ModuleInitFlags, delete_module, finit_module};

use super::iomem::RamRange;
use super::lime_format::{HEADER_SIZE, LimeHeader, LimeHeaderError};
use crate::pipeline::{ProduceError, Producer};
use crate::source::resilient::BadRanges;

/// Why LiME could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LimeError {
    /// No module given.
    #[error("no LiME module given (--lime-module PATH --lime-sha256 HEX)")]
    NoModule,
    /// No hash given.
    #[error(
        "--lime-sha256 is required with --lime-module: a module is only loaded when its hash is known"
    )]
    NoHash,
    /// Reading the file failed.
    #[error("reading LiME module {path}: {error}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Error.
        #[source]
        error: io::Error,
    },
    /// Hash mismatch.
    #[error(
        "LiME module {path} has SHA-256 {actual}, not the expected {expected}; refusing to load it"
    )]
    Hash {
        /// Path.
        path: PathBuf,
        /// Its hash.
        actual: String,
        /// --lime-sha256.
        expected: String,
    },
    /// Not a kernel module.
    #[error("{path} is not a kernel module: {detail}")]
    NotModule {
        /// Path.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// Built for another kernel.
    #[error(
        "LiME module {path} was built for kernel {module_release} (vermagic {vermagic:?}) but the running kernel is {running}; refusing to load it"
    )]
    Vermagic {
        /// Path.
        path: PathBuf,
        /// Module's full vermagic.
        vermagic: String,
        /// The release part of it.
        module_release: String,
        /// `uname -r`.
        running: String,
    },
    /// finit_module failed.
    #[error("loading LiME failed: {0}{1}")]
    Load(nix::Error, &'static str),
    /// Never connected.
    #[error("LiME did not accept a connection on 127.0.0.1:{port} within {secs} s: {last}")]
    Connect {
        /// Port.
        port: u16,
        /// Timeout.
        secs: u64,
        /// Last connect error.
        last: String,
    },
    /// Socket setup.
    #[error("LiME socket: {0}")]
    Socket(#[source] io::Error),
}

/// Parses the NUL-separated `key=value` strings of a `.modinfo` section.
pub fn parse_modinfo(section: &[u8]) -> Vec<(String, String)> {
    section
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let s = std::str::from_utf8(entry).ok()?;
            let (k, v) = s.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Reads `.modinfo` from a kernel module (an ELF relocatable object).
pub fn read_modinfo(ko: &[u8]) -> Result<Vec<(String, String)>, String> {
    let elf = Elf::parse(ko).map_err(|e| e.to_string())?;
    let sh = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".modinfo"))
        .ok_or("no .modinfo section")?;
    let start = usize::try_from(sh.sh_offset).map_err(|e| e.to_string())?;
    let len = usize::try_from(sh.sh_size).map_err(|e| e.to_string())?;
    let bytes = start
        .checked_add(len)
        .and_then(|end| ko.get(start..end))
        .ok_or(".modinfo lies outside the file")?;
    Ok(parse_modinfo(bytes))
}

/// The kernel release a vermagic names: its first word (`6.1.0-57-amd64 SMP preempt …`).
pub fn vermagic_release(vermagic: &str) -> &str {
    vermagic.split_whitespace().next().unwrap_or("")
}

/// Checks a module's bytes before loading: hash first, then vermagic against `running`.
pub fn check_module(
    path: &Path,
    ko: &[u8],
    expected_sha256: &str,
    running: &str,
) -> Result<LimeModuleFacts, LimeError> {
    let actual = hex::encode(crate::hash::Sha256::digest(ko));
    let expected = expected_sha256.trim().to_ascii_lowercase();
    if actual != expected {
        return Err(LimeError::Hash {
            path: path.to_owned(),
            actual,
            expected,
        });
    }
    let info = read_modinfo(ko).map_err(|detail| LimeError::NotModule {
        path: path.to_owned(),
        detail,
    })?;
    let get = |k: &str| {
        info.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let vermagic = get("vermagic").ok_or_else(|| LimeError::NotModule {
        path: path.to_owned(),
        detail: ".modinfo has no vermagic".into(),
    })?;
    let module_release = vermagic_release(&vermagic).to_owned();
    if module_release != running {
        return Err(LimeError::Vermagic {
            path: path.to_owned(),
            vermagic,
            module_release,
            running: running.to_owned(),
        });
    }
    Ok(LimeModuleFacts {
        path: path.to_owned(),
        sha256: actual,
        vermagic,
        version: get("version"),
        name: get("name").unwrap_or_else(|| "lime".into()),
        parameters: None,
    })
}

/// Timeouts of a LiME session.
#[derive(Debug, Clone, Copy)]
pub struct LimeTimeouts {
    /// How long to wait for LiME's listener.
    pub connect: Duration,
    /// How long the stream may go without a byte.
    pub stall: Duration,
    /// How long to wait for the module's init to return after the stream ends.
    pub unload: Duration,
    /// LiME's own `timeout` parameter, in ms: above 0, a page write slower than this makes
    /// LiME zero-fill the rest of its range. Always 0 (never skip) except in the tests that
    /// reproduce that failure.
    pub page_timeout_ms: u64,
}

impl Default for LimeTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(60),
            stall: Duration::from_secs(60),
            unload: Duration::from_secs(30),
            page_timeout_ms: 0,
        }
    }
}

/// LiME's module parameters: a dump in LiME format to a loopback-only listener on `port`,
/// never skipping a slow range (see the module docs).
pub fn module_parameters(port: u16, page_timeout_ms: u64) -> String {
    format!("path=tcp:{port} localhostonly=1 format=lime timeout={page_timeout_ms}")
}

/// A loaded LiME module and the thread blocked in its init. Dropping it unloads the module.
#[derive(Debug)]
pub struct LimeSession {
    name: String,
    done: Option<mpsc::Receiver<nix::Result<()>>>,
    /// How LiME's init ended, once known: `Err` holds the cause in words.
    init: Option<Result<(), String>>,
    thread: Option<JoinHandle<()>>,
    unload_wait: Duration,
    /// What happened at unload, for the report.
    pub cleanup: Option<String>,
    /// The parameters the module was loaded with.
    pub parameters: String,
}

/// A free loopback port (LiME takes it a moment later).
fn free_port() -> Result<u16, LimeError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(LimeError::Socket)?;
    Ok(l.local_addr().map_err(LimeError::Socket)?.port())
}

impl LimeSession {
    /// Loads the (checked) module and connects to its listener.
    pub fn start(
        module: File,
        facts: &LimeModuleFacts,
        timeouts: LimeTimeouts,
    ) -> Result<(Self, TcpStream), LimeError> {
        let port = free_port()?;
        let parameters = module_parameters(port, timeouts.page_timeout_ms);
        let params =
            CString::new(parameters.clone()).map_err(|e| LimeError::Socket(io::Error::other(e)))?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("airf-lime-init".into())
            .spawn(move || {
                let r = finit_module(&module, &params, ModuleInitFlags::empty());
                let _ = tx.send(r);
            })
            .map_err(LimeError::Socket)?;
        let mut session = Self {
            name: facts.name.clone(),
            done: Some(rx),
            init: None,
            thread: Some(thread),
            unload_wait: timeouts.unload,
            cleanup: None,
            parameters,
        };
        let deadline = Instant::now() + timeouts.connect;
        loop {
            // An init that already returned failed to load (or sent nothing): say why.
            if let Some(r) = session.done.as_ref().and_then(|rx| rx.try_recv().ok()) {
                session.done = None;
                return Err(match r {
                    Err(e) => LimeError::Load(e, load_hint(e)),
                    Ok(()) => LimeError::Connect {
                        port,
                        secs: timeouts.connect.as_secs(),
                        last: "the module's init returned before a connection".into(),
                    },
                });
            }
            let last = match TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(2),
            ) {
                Ok(s) => {
                    s.set_read_timeout(Some(timeouts.stall))
                        .map_err(LimeError::Socket)?;
                    return Ok((session, s));
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(LimeError::Connect {
                    port,
                    secs: timeouts.connect.as_secs(),
                    last,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (up to the unload timeout) for LiME's init to return and says how it ended.
    /// Idempotent.
    pub fn wait_init(&mut self) -> Result<(), String> {
        if let Some(r) = &self.init {
            return r.clone();
        }
        let r = match self.done.take() {
            Some(rx) => match rx.recv_timeout(self.unload_wait) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("init failed: {e}")),
                Err(_) => Err(format!("init still running after {:?}", self.unload_wait)),
            },
            // Start() saw init return early and already reported it.
            None => Err("init returned before a connection".to_owned()),
        };
        self.init = Some(r.clone());
        r
    }

    /// Waits for init to return, then removes the module. Idempotent.
    pub fn unload(&mut self) -> String {
        if let Some(c) = &self.cleanup {
            return c.clone();
        }
        let init = match self.wait_init() {
            Ok(()) => "init returned".to_owned(),
            Err(e) => e,
        };
        let name = CString::new(self.name.clone()).unwrap_or_default();
        let result = match delete_module(&name, DeleteModuleFlags::O_NONBLOCK) {
            Ok(()) => format!("{init}; module {} unloaded", self.name),
            Err(nix::Error::ENOENT) => format!("{init}; module {} not loaded", self.name),
            Err(e) => format!(
                "{init}; unloading module {} failed: {e} (run `rmmod {}`)",
                self.name, self.name
            ),
        };
        if let Some(t) = self.thread.take()
            && t.is_finished()
        {
            let _ = t.join();
        }
        self.cleanup = Some(result.clone());
        result
    }
}

impl Drop for LimeSession {
    fn drop(&mut self) {
        let r = self.unload();
        tracing::info!("LiME: {r}");
    }
}

fn load_hint(e: nix::Error) -> &'static str {
    match e {
        nix::Error::EPERM => {
            " (kernel lockdown, module signature enforcement, or missing CAP_SYS_MODULE)"
        }
        nix::Error::EEXIST => " (a LiME module is already loaded: rmmod lime)",
        nix::Error::ENOEXEC => " (not a module for this kernel)",
        _ => "",
    }
}

/// Reads LiME's stream, checking each header against the expected RAM ranges.
#[derive(Debug)]
pub struct LimeStreamProducer<R> {
    stream: R,
    expected: Vec<RamRange>,
    next_range: usize,
    header: [u8; HEADER_SIZE],
    header_got: usize,
    data_left: u64,
    total: u64,
}

impl<R: Read + Send> LimeStreamProducer<R> {
    /// A producer over LiME's stream, expecting exactly `expected`, in order.
    pub fn new(stream: R, expected: Vec<RamRange>) -> Self {
        Self {
            stream,
            expected,
            next_range: 0,
            header: [0; HEADER_SIZE],
            header_got: 0,
            data_left: 0,
            total: 0,
        }
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
        loop {
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ProduceError::Source(format!(
                        "LiME stream stalled: no data for the read timeout after {} bytes; the image is truncated",
                        self.total
                    )));
                }
                Err(e) => {
                    return Err(ProduceError::Source(format!(
                        "reading the LiME stream after {} bytes failed: {e}",
                        self.total
                    )));
                }
            }
        }
    }

    fn check_header(&mut self) -> Result<(), ProduceError> {
        let at = self.total - HEADER_SIZE as u64;
        let h = LimeHeader::read(&self.header).map_err(|e: LimeHeaderError| {
            ProduceError::Source(format!("bad LiME header at stream offset {at}: {e}"))
        })?;
        let want = self.expected.get(self.next_range).ok_or_else(|| {
            ProduceError::Source(format!(
                "LiME sent a range {:#x}-{:#x} at stream offset {at} after all {} System RAM ranges of /proc/iomem",
                h.start,
                h.end,
                self.expected.len()
            ))
        })?;
        if (h.start, h.end) != (want.start, want.end) {
            return Err(ProduceError::Source(format!(
                "LiME range {:#x}-{:#x} at stream offset {at} is not the expected System RAM range {:#x}-{:#x}",
                h.start, h.end, want.start, want.end
            )));
        }
        self.data_left = want.size();
        self.next_range += 1;
        Ok(())
    }
}

impl<R: Read + Send> Producer for LimeStreamProducer<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
        let mut filled = 0usize;
        while filled < buf.len() {
            if self.data_left == 0 && self.header_got == HEADER_SIZE {
                self.check_header()?;
                self.header_got = 0;
                continue;
            }
            let want = if self.data_left > 0 {
                usize::try_from(self.data_left).unwrap_or(usize::MAX)
            } else {
                HEADER_SIZE - self.header_got
            }
            .min(buf.len() - filled);
            let Some(dst) = buf.get_mut(filled..filled + want) else {
                break;
            };
            let n = self.read_some(dst)?;
            if n == 0 {
                if self.data_left == 0
                    && self.header_got == 0
                    && self.next_range == self.expected.len()
                {
                    break;
                }
                return Err(ProduceError::Source(format!(
                    "LiME stream ended early after {} bytes, {} of {} ranges sent: the image is truncated",
                    self.total,
                    self.next_range
                        .saturating_sub(usize::from(self.data_left > 0)),
                    self.expected.len()
                )));
            }
            if self.data_left > 0 {
                self.data_left -= n as u64;
            } else {
                let (Some(h), Some(src)) = (
                    self.header.get_mut(self.header_got..self.header_got + n),
                    dst.get(..n),
                ) else {
                    break;
                };
                h.copy_from_slice(src);
                self.header_got += n;
            }
            self.total += n as u64;
            filled += n;
        }
        // A last header completed exactly at the end of `buf` is checked on the next call.
        Ok(filled)
    }
}

/// LiME's stream plus the loaded module; unloads the module when dropped.
#[derive(Debug)]
pub struct LimeProducer {
    /// The stream reader.
    pub stream: LimeStreamProducer<TcpStream>,
    /// The module session (dropped after the stream).
    pub session: LimeSession,
}

impl Producer for LimeProducer {
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
        let n = self.stream.fill(buf)?;
        if n < buf.len() {
            // A complete stream is LiME's only if LiME's init says it succeeded: anything else
            // that listened on the port first (another local process racing for it) made
            // LiME's own listen fail, and its bytes are not evidence.
            self.session.wait_init().map_err(|e| {
                ProduceError::Source(format!(
                    "the stream on the LiME port did not come from LiME ({e}); the image cannot be trusted"
                ))
            })?;
        }
        Ok(n)
    }
}

impl crate::pipeline::EvidenceProducer for LimeProducer {
    fn unreadable(&self) -> BadRanges {
        BadRanges::default()
    }
}

impl Drop for LimeProducer {
    fn drop(&mut self) {
        let _ = self.stream.stream.shutdown(Shutdown::Both);
        self.session.unload();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ranges() -> Vec<RamRange> {
        vec![
            RamRange {
                start: 0x1000,
                end: 0x1fff,
            },
            RamRange {
                start: 0x10_0000,
                end: 0x10_2fff,
            },
        ]
    }

    fn stream(ranges: &[RamRange]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in ranges {
            out.extend_from_slice(
                &LimeHeader {
                    start: r.start,
                    end: r.end,
                }
                .encode(),
            );
            out.extend(std::iter::repeat_n(
                (r.start >> 12) as u8,
                r.size() as usize,
            ));
        }
        out
    }

    /// A complete, well-formed stream still fails when LiME's init did not succeed: the bytes
    /// came from whoever held the port, not from the module.
    #[test]
    fn stream_counts_only_when_lime_init_succeeded() -> Result<(), Box<dyn std::error::Error>> {
        for init in [Ok(()), Err(nix::Error::EADDRINUSE)] {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let bytes = stream(&ranges());
            let server = std::thread::spawn(move || -> io::Result<()> {
                let (mut conn, _) = listener.accept()?;
                io::Write::write_all(&mut conn, &bytes)
            });
            let (tx, rx) = mpsc::channel();
            tx.send(init)?;
            let mut producer = LimeProducer {
                stream: LimeStreamProducer::new(TcpStream::connect(addr)?, ranges()),
                session: LimeSession {
                    name: "airf_test_not_a_module".into(),
                    done: Some(rx),
                    init: None,
                    thread: None,
                    unload_wait: Duration::from_secs(5),
                    cleanup: None,
                    parameters: module_parameters(0, 0),
                },
            };
            let out = drain(&mut producer, 4096);
            let _ = server.join();
            match init {
                Ok(()) => assert!(out.is_ok_and(|b| b == stream(&ranges()))),
                Err(_) => assert!(matches!(
                    out,
                    Err(ProduceError::Source(m)) if m.contains("did not come from LiME")
                )),
            }
        }
        Ok(())
    }

    fn drain(p: &mut dyn Producer, chunk: usize) -> Result<Vec<u8>, ProduceError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = p.fill(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    #[test]
    fn passes_a_good_stream_through() -> Result<(), ProduceError> {
        let s = stream(&ranges());
        for chunk in [1, 7, 32, 4096, 1 << 20] {
            let mut p = LimeStreamProducer::new(io::Cursor::new(s.clone()), ranges());
            assert_eq!(drain(&mut p, chunk)?, s);
        }
        Ok(())
    }

    #[test]
    fn truncation_and_bad_headers_are_errors() {
        let s = stream(&ranges());
        for cut in [0, 10, 32, 100, 32 + 0x1000, 32 + 0x1000 + 5, s.len() - 1] {
            let mut p = LimeStreamProducer::new(
                io::Cursor::new(s.get(..cut).unwrap_or_default().to_vec()),
                ranges(),
            );
            let e = drain(&mut p, 4096).map(|v| v.len());
            assert!(
                matches!(&e, Err(ProduceError::Source(m)) if m.contains("truncated")),
                "cut {cut}: {e:?}"
            );
        }
        let mut bad = s.clone();
        if let Some(b) = bad.get_mut(0) {
            *b = 0;
        }
        let e = drain(
            &mut LimeStreamProducer::new(io::Cursor::new(bad), ranges()),
            4096,
        );
        assert!(
            matches!(&e, Err(ProduceError::Source(m)) if m.contains("magic")),
            "{e:?}"
        );
        // A range that /proc/iomem does not list.
        let other = stream(&[RamRange {
            start: 0x2000,
            end: 0x2fff,
        }]);
        let e = drain(
            &mut LimeStreamProducer::new(io::Cursor::new(other), ranges()),
            4096,
        );
        assert!(
            matches!(&e, Err(ProduceError::Source(m)) if m.contains("not the expected")),
            "{e:?}"
        );
        // Extra data after the last range.
        let mut extra = s.clone();
        extra.extend_from_slice(&[1, 2, 3]);
        assert!(
            drain(
                &mut LimeStreamProducer::new(io::Cursor::new(extra), ranges()),
                4096
            )
            .is_err()
        );
    }

    /// LiME never skips a slow range unless a test asks it to.
    #[test]
    fn lime_is_loaded_with_the_skip_disabled() {
        let p = module_parameters(4242, LimeTimeouts::default().page_timeout_ms);
        assert_eq!(p, "path=tcp:4242 localhostonly=1 format=lime timeout=0");
    }

    #[test]
    fn modinfo_and_vermagic() {
        let info = parse_modinfo(b"version=1.9.1\0license=GPL\0\0name=lime\0vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions \0");
        assert_eq!(info.len(), 4);
        let vm = info
            .iter()
            .find(|(k, _)| k == "vermagic")
            .map(|(_, v)| v.as_str());
        assert_eq!(vm.map(vermagic_release), Some("6.1.0-57-amd64"));
        assert!(matches!(
            check_module(
                Path::new("x.ko"),
                b"junk",
                &"00".repeat(32),
                "6.1.0-57-amd64"
            ),
            Err(LimeError::Hash { .. })
        ));
        let sha = hex::encode(crate::hash::Sha256::digest(b"junk"));
        assert!(matches!(
            check_module(Path::new("x.ko"), b"junk", &sha, "6.1.0-57-amd64"),
            Err(LimeError::NotModule { .. })
        ));
    }

    proptest! {
        #[test]
        fn stream_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), chunk in 1usize..64) {
            let mut p = LimeStreamProducer::new(io::Cursor::new(bytes), ranges());
            let _ = drain(&mut p, chunk);
        }

        #[test]
        fn modinfo_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_modinfo(&bytes);
            let _ = read_modinfo(&bytes);
        }
    }
}
