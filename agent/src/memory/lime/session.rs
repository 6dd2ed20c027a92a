//! One load of a checked LiME module: its parameters, its loopback connection, its unload.
//!
//! The module is loaded with `finit_module` on the very file that was checked, with
//! `path=tcp:<port> localhostonly=1 format=lime timeout=0`. LiME's init blocks until the dump
//! is sent, so it runs on a thread of its own while this side connects and reads.
//!
//! Every parameter is set on purpose, because LiME's defaults are part of the evidence:
//! `timeout` (ms, default 1000) makes LiME give up on a range when one page write takes
//! longer, and silently write zeros for the rest of it. Over TCP a write takes as long as the
//! upload pushes back (a slow S3 endpoint, a busy host), so the default turns backpressure
//! into a hollow image. `timeout=0` disables the skip: LiME waits for the reader, and the
//! agent's own stall timeout ([`LimeTimeouts::stall`]) bounds the wait.
//!
//! The module is always unloaded at the end, also on failure: dropping the session waits (up
//! to [`LimeTimeouts::unload`]) for init to return and then removes the module, and what
//! happened is kept for the report.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::kmod::{DeleteModuleFlags, ModuleInitFlags, delete_module, finit_module};

use super::error::LimeError;
use airf_evidence::memory::LimeModuleFacts;

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
    /// The module name, as `delete_module` takes it.
    name: CString,
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
        // Known before loading: a module that could not be named to `delete_module` could not
        // be unloaded either.
        let name = CString::new(facts.name.clone()).map_err(|_| LimeError::NotModule {
            path: facts.path.clone(),
            detail: format!("its name {:?} contains a NUL byte", facts.name),
        })?;
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
            name,
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

    /// A session whose init already ended with `init` and whose module is not loaded, for
    /// tests of what reads the stream.
    #[cfg(test)]
    pub(super) fn ended(init: nix::Result<()>) -> Self {
        let (tx, rx) = mpsc::channel();
        tx.send(init).unwrap();
        Self {
            name: c"airf_test_not_a_module".to_owned(),
            done: Some(rx),
            init: None,
            thread: None,
            unload_wait: Duration::from_secs(5),
            cleanup: None,
            parameters: module_parameters(0, 0),
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
        let name = self.name.to_string_lossy();
        let result = match delete_module(&self.name, DeleteModuleFlags::O_NONBLOCK) {
            Ok(()) => format!("{init}; module {name} unloaded"),
            Err(nix::Error::ENOENT) => format!("{init}; module {name} not loaded"),
            Err(e) => format!("{init}; unloading module {name} failed: {e} (run `rmmod {name}`)"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str) -> LimeModuleFacts {
        LimeModuleFacts {
            path: "lime.ko".into(),
            sha256: "00".repeat(32),
            vermagic: "6.1.0-57-amd64 SMP".into(),
            version: None,
            name: name.into(),
            parameters: None,
        }
    }

    /// A module whose name `delete_module` cannot take is refused before it is loaded.
    #[test]
    fn a_module_that_could_not_be_unloaded_is_not_loaded() {
        let module = File::open("/dev/null").unwrap();
        let e = LimeSession::start(module, &facts("li\0me"), LimeTimeouts::default());
        assert!(
            matches!(&e, Err(LimeError::NotModule { detail, .. }) if detail.contains("NUL")),
            "{e:?}"
        );
    }

    /// LiME never skips a slow range unless a test asks it to.
    #[test]
    fn lime_is_loaded_with_the_skip_disabled() {
        let p = module_parameters(4242, LimeTimeouts::default().page_timeout_ms);
        assert_eq!(p, "path=tcp:4242 localhostonly=1 format=lime timeout=0");
    }
}
