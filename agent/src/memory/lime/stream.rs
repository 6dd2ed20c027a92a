//! Reading the dump LiME sends over its loopback connection, trusting none of it.
//!
//! LiME can stall or stop early over TCP: every range header is checked against the "System
//! RAM" ranges of `/proc/iomem` (the same ranges, in the same order) and against the bytes that
//! follow, a stalled stream times out, and an early end is an error, never a complete image.
//! A complete stream is evidence only when LiME's init says it succeeded: whatever else listened
//! on the port first made LiME's own listen fail.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};

use super::session::LimeSession;
use crate::memory::iomem::RamRange;
use crate::memory::lime_format::{HEADER_SIZE, LimeHeader, LimeHeaderError};
use crate::pipeline::{ProduceError, Producer};
use crate::source::resilient::BadRanges;

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
    use std::net::TcpListener;

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
    fn stream_counts_only_when_lime_init_succeeded() {
        for init in [Ok(()), Err(nix::Error::EADDRINUSE)] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let bytes = stream(&ranges());
            let server = std::thread::spawn(move || -> io::Result<()> {
                let (mut conn, _) = listener.accept()?;
                io::Write::write_all(&mut conn, &bytes)
            });
            let mut producer = LimeProducer {
                stream: LimeStreamProducer::new(TcpStream::connect(addr).unwrap(), ranges()),
                session: LimeSession::ended(init),
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
    }

    fn drain(p: &mut dyn Producer, chunk: usize) -> Result<Vec<u8>, ProduceError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = p.fill(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn passes_a_good_stream_through() {
        let s = stream(&ranges());
        for chunk in [1, 7, 32, 4096, 1 << 20] {
            let mut p = LimeStreamProducer::new(io::Cursor::new(s.clone()), ranges());
            assert_eq!(drain(&mut p, chunk).unwrap(), s);
        }
    }

    #[test]
    fn truncation_and_bad_headers_are_errors() {
        let s = stream(&ranges());
        for cut in [0, 10, 32, 100, 32 + 0x1000, 32 + 0x1000 + 5, s.len() - 1] {
            let mut p = LimeStreamProducer::new(io::Cursor::new(s[..cut].to_vec()), ranges());
            let e = drain(&mut p, 4096).map(|v| v.len());
            assert!(
                matches!(&e, Err(ProduceError::Source(m)) if m.contains("truncated")),
                "cut {cut}: {e:?}"
            );
        }
        let mut bad = s.clone();
        bad[0] = 0;
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

    proptest! {
        #[test]
        fn stream_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), chunk in 1usize..64) {
            let mut p = LimeStreamProducer::new(io::Cursor::new(bytes), ranges());
            let _ = drain(&mut p, chunk);
        }
    }
}
