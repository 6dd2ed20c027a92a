//! A deliberately slow TCP link on loopback: a proxy in front of a server (Garage) that holds
//! every upload back for a while and then lets it through at a fixed rate.
//!
//! A real S3 endpoint pushes back: a cold server, a busy host, a long path. The tests use this
//! to make that happen on purpose, so that what a memory source does under backpressure is
//! tested, not left to the speed of the machine the tests run on.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How slow the link is.
#[derive(Debug, Clone, Copy)]
pub struct Slowness {
    /// Nothing from any client is passed on until this long after the first connection.
    pub hold: Duration,
    /// Client-to-server bytes per second after that.
    pub bytes_per_sec: u64,
}

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct SlowLink {
    /// Port on 127.0.0.1 that clients connect to.
    pub port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SlowLink {
    /// Listens on a free loopback port and forwards each connection to
    /// `127.0.0.1:upstream_port`, slowed as `slowness` says.
    pub fn start(upstream_port: u16, slowness: Slowness) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the slow link")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let acceptor = std::thread::Builder::new()
            .name("slow-link".into())
            .spawn(move || {
                let mut release_at = None;
                while !flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let at =
                                *release_at.get_or_insert_with(|| Instant::now() + slowness.hold);
                            let _ = forward(client, upstream_port, at, slowness, &flag);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => break,
                    }
                }
            })?;
        Ok(Self {
            port,
            stop,
            acceptor: Some(acceptor),
        })
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Starts the two copy threads of one connection.
fn forward(
    client: TcpStream,
    upstream_port: u16,
    release_at: Instant,
    slowness: Slowness,
    stop: &Arc<AtomicBool>,
) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect(("127.0.0.1", upstream_port))?;
    let (c2, s2) = (client.try_clone()?, server.try_clone()?);
    let flag = Arc::clone(stop);
    std::thread::spawn(move || {
        let _ = copy_slowly(client, server, release_at, slowness, &flag);
    });
    std::thread::spawn(move || {
        let _ = copy(s2, c2);
    });
    Ok(())
}

/// Client to server: nothing before `release_at`, then at most `bytes_per_sec`.
fn copy_slowly(
    mut from: TcpStream,
    mut to: TcpStream,
    release_at: Instant,
    slowness: Slowness,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 << 10];
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        if now < release_at {
            std::thread::sleep((release_at - now).min(Duration::from_millis(50)));
            if stop.load(Ordering::SeqCst) {
                break;
            }
            continue;
        }
        // Stay at or under the rate since the release.
        let due = Duration::from_secs_f64(sent as f64 / slowness.bytes_per_sec.max(1) as f64);
        let elapsed = now - release_at;
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        to.write_all(buf.get(..n).unwrap_or_default())?;
        sent += n as u64;
    }
    let _ = to.shutdown(Shutdown::Write);
    Ok(())
}

/// Server to client, at full speed.
fn copy(mut from: TcpStream, mut to: TcpStream) -> io::Result<()> {
    io::copy(&mut from, &mut to)?;
    let _ = to.shutdown(Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes arrive whole, not before the hold, and no faster than the rate.
    #[test]
    fn holds_then_throttles() -> Result<()> {
        let upstream = TcpListener::bind("127.0.0.1:0")?;
        let up_port = upstream.local_addr()?.port();
        let server = std::thread::spawn(move || -> io::Result<(Vec<u8>, Duration)> {
            let (mut c, _) = upstream.accept()?;
            let t = Instant::now();
            let mut got = Vec::new();
            c.read_to_end(&mut got)?;
            c.write_all(b"ok")?;
            Ok((got, t.elapsed()))
        });
        let link = SlowLink::start(
            up_port,
            Slowness {
                hold: Duration::from_millis(500),
                bytes_per_sec: 200_000,
            },
        )?;
        let started = Instant::now();
        let mut c = TcpStream::connect(("127.0.0.1", link.port))?;
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        c.write_all(&data)?;
        c.shutdown(Shutdown::Write)?;
        let mut reply = Vec::new();
        c.read_to_end(&mut reply)?;
        let total = started.elapsed();
        let (got, _) = server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))??;
        assert_eq!(got, data);
        assert_eq!(reply, b"ok");
        // 0.5 s held + 100 kB at 200 kB/s (the last chunk may go out early).
        assert!(total >= Duration::from_millis(500 + 400), "{total:?}");
        Ok(())
    }
}
