//! A fault-injecting HTTP/1.1 proxy on loopback, in front of an S3 server (Garage).
//!
//! The agent talks S3 to the proxy (`--endpoint-url http://127.0.0.1:<port>`); the proxy reads
//! each request whole (head, then the body by `Content-Length` or chunked transfer encoding,
//! bytes forwarded exactly as they came, so SigV4 signatures and `aws-chunked` bodies stay
//! valid), classifies it ([`Kind`]) and then forwards it, or injects a [`Fault`]: a dropped
//! connection, a delayed response, `503 SlowDown`, a **lost response** (the server did the work,
//! the client never hears of it), a response held until the test releases it, or the server
//! down for a while.
//!
//! One request per connection: the proxy forwards each request with `Connection: close` and
//! answers with `Connection: close`, so the client opens a new connection per request. That
//! keeps the proxy free of keep-alive bookkeeping, and it is what lets a fault hit exactly one
//! request. The SDK's connection pool copes with it (it reconnects).
//!
//! Faults come from a script ([`Rule`]: the n-th request of a kind gets a fault) and, for
//! sweeps, from a seeded generator ([`RandomFaults`]): the fault of the n-th request of a kind
//! depends only on the seed, the kind and n, not on how concurrent requests interleave. Every
//! request is logged ([`Entry`]) so a failing test can print what happened.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What an S3 request does, as far as the faults care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `POST /bucket/key?uploads`.
    CreateUpload,
    /// `PUT /bucket/key?partNumber=N&uploadId=U`.
    UploadPart,
    /// `POST /bucket/key?uploadId=U`.
    CompleteUpload,
    /// `DELETE /bucket/key?uploadId=U`.
    AbortUpload,
    /// `PUT` of a `*.manifest.json` key: the object that claims an image is complete.
    PutManifest,
    /// Any other `PUT` of an object (e.g. `result.json`).
    PutObject,
    /// `GET /bucket?…`: ListObjectsV2, ListMultipartUploads, ListParts on a bucket.
    List,
    /// Anything else (HEAD and GET of objects, ListParts, …).
    Other,
}

impl Kind {
    fn id(self) -> u64 {
        match self {
            Self::CreateUpload => 1,
            Self::UploadPart => 2,
            Self::CompleteUpload => 3,
            Self::AbortUpload => 4,
            Self::PutManifest => 5,
            Self::PutObject => 6,
            Self::List => 7,
            Self::Other => 8,
        }
    }

    /// Kinds whose lost response the agent must survive (the server did the work).
    fn can_lose_response(self) -> bool {
        matches!(
            self,
            Self::CreateUpload | Self::CompleteUpload | Self::PutManifest
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CreateUpload => "Create",
            Self::UploadPart => "UploadPart",
            Self::CompleteUpload => "Complete",
            Self::AbortUpload => "Abort",
            Self::PutManifest => "PutManifest",
            Self::PutObject => "PutObject",
            Self::List => "List",
            Self::Other => "Other",
        })
    }
}

/// What the proxy does to one request instead of forwarding it plainly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection after reading the request, before forwarding it.
    Drop,
    /// Forward, then wait this long before answering.
    Delay(Duration),
    /// Answer `503 SlowDown` with S3's XML error body; nothing is forwarded.
    SlowDown,
    /// Forward, let the server finish, then close the connection without answering.
    LostResponse,
    /// Forward, then hold the response until [`FaultProxy::release`].
    Hold,
    /// Close this connection and every connection for this long: the server is down.
    Down(Duration),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Drop => f.write_str("drop"),
            Self::Delay(d) => write!(f, "delay {}ms", d.as_millis()),
            Self::SlowDown => f.write_str("503"),
            Self::LostResponse => f.write_str("lost-response"),
            Self::Hold => f.write_str("hold"),
            Self::Down(d) => write!(f, "down {}s", d.as_secs()),
        }
    }
}

/// A scripted fault: the requests of `kind` whose 1-based occurrence is in `nth` get `fault`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Which requests.
    pub kind: Kind,
    /// Which occurrences of them (1 = the first).
    pub nth: RangeInclusive<usize>,
    /// What happens to them.
    pub fault: Fault,
}

impl Rule {
    /// The `n`-th request of `kind` gets `fault`.
    pub fn nth(kind: Kind, n: usize, fault: Fault) -> Self {
        Self {
            kind,
            nth: n..=n,
            fault,
        }
    }

    /// The first `n` requests of `kind` get `fault`.
    pub fn first(kind: Kind, n: usize, fault: Fault) -> Self {
        Self {
            kind,
            nth: 1..=n,
            fault,
        }
    }
}

/// Faults drawn per request from a seed.
#[derive(Debug, Clone, Copy)]
pub struct RandomFaults {
    /// The seed: the same seed gives every (kind, occurrence) the same fault.
    pub seed: u64,
    /// Probability that a request gets a fault, in per mille.
    pub per_mille: u64,
    /// The outage length of a `Down` fault (at most one per proxy); None: no outages.
    pub down: Option<Duration>,
    /// The longest `Delay`.
    pub max_delay: Duration,
}

impl RandomFaults {
    /// The fault, if any, of the `n`-th request of `kind`.
    pub fn pick(&self, kind: Kind, n: usize) -> Option<Fault> {
        let mut rng = SplitMix64(
            self.seed ^ kind.id().wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (n as u64).rotate_left(32),
        );
        if rng.below(1000) >= self.per_mille {
            return None;
        }
        // Weights: drop 3, delay 3, 503 3, lost response 3 (where it applies), down 1.
        let mut menu: Vec<(u64, Fault)> = vec![
            (3, Fault::Drop),
            (
                3,
                Fault::Delay(Duration::from_millis(
                    200 + rng.below(
                        u64::try_from(self.max_delay.as_millis())
                            .unwrap_or(3000)
                            .saturating_sub(200)
                            .max(1),
                    ),
                )),
            ),
            (3, Fault::SlowDown),
        ];
        if kind.can_lose_response() {
            menu.push((3, Fault::LostResponse));
        }
        if let Some(d) = self.down {
            menu.push((1, Fault::Down(d)));
        }
        let total: u64 = menu.iter().map(|(w, _)| w).sum();
        let mut at = rng.below(total);
        for (w, fault) in menu {
            if at < w {
                return Some(fault);
            }
            at -= w;
        }
        None
    }
}

/// SplitMix64: small, fast and good enough to choose faults and fill test files.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(v.get(..chunk.len()).unwrap_or_default());
        }
    }
}

/// How the proxy misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Scripted faults; the first matching rule wins, before any random fault.
    pub script: Vec<Rule>,
    /// Random faults for every request no rule matched.
    pub random: Option<RandomFaults>,
    /// Nothing is forwarded until [`FaultProxy::release`]: requests wait, unread by the
    /// server (a client that starts now but reaches S3 only later).
    pub gated: bool,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Milliseconds since the proxy started.
    pub at_ms: u128,
    /// What the request was.
    pub kind: Kind,
    /// Its occurrence among requests of its kind (1 = the first).
    pub nth: usize,
    /// The object key (empty for bucket requests).
    pub key: String,
    /// The fault injected, if any; `refused` for connections closed during an outage.
    pub fault: Option<Fault>,
    /// The server's status code, when the request reached the server.
    pub status: Option<u16>,
    /// The multipart upload: from the query, or from the server's answer to a Create (also
    /// when that answer was lost on the way to the client).
    pub upload_id: Option<String>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>6}ms {}#{} {} -> {} ({})",
            self.at_ms,
            self.kind,
            self.nth,
            self.key,
            self.fault.map_or("forwarded".to_owned(), |x| x.to_string()),
            self.status
                .map_or("not forwarded".to_owned(), |s| s.to_string())
        )?;
        if let Some(u) = &self.upload_id {
            write!(f, " upload {u}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct State {
    log: Vec<Entry>,
    counts: Vec<(Kind, usize)>,
    down_until: Option<Instant>,
    refused: usize,
    held: Vec<Entry>,
    released: bool,
}

#[derive(Debug)]
struct Shared {
    upstream_port: u16,
    plan: Plan,
    started: Instant,
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_down(&self) -> bool {
        self.lock().down_until.is_some_and(|t| Instant::now() < t)
    }

    /// Counts the request and decides its fault.
    fn admit(&self, kind: Kind) -> (usize, Option<Fault>) {
        let mut st = self.lock();
        let nth = match st.counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                st.counts.push((kind, 1));
                1
            }
        };
        let scripted = self
            .plan
            .script
            .iter()
            .find(|r| r.kind == kind && r.nth.contains(&nth))
            .map(|r| r.fault);
        let used_down = st
            .log
            .iter()
            .any(|e| matches!(e.fault, Some(Fault::Down(_))));
        let fault = scripted.or_else(|| {
            self.plan
                .random
                .and_then(|r| r.pick(kind, nth))
                // One outage per proxy: a second would only repeat the first.
                .filter(|f| !(matches!(f, Fault::Down(_)) && used_down))
        });
        if let Some(Fault::Down(d)) = fault {
            st.down_until = Some(Instant::now() + d);
        }
        (nth, fault)
    }

    fn record(&self, entry: Entry) {
        self.lock().log.push(entry);
        self.changed.notify_all();
    }
}

/// The proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// Port on 127.0.0.1 that clients connect to.
    pub port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port in front of `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16, plan: Plan) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fault proxy")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            upstream_port,
            plan,
            started: Instant::now(),
            state: Mutex::default(),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let sh = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(&listener, &sh))?;
        Ok(Self {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The endpoint URL for the agent.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, in the order they ended.
    pub fn log(&self) -> Vec<Entry> {
        self.shared.lock().log.clone()
    }

    /// The requests that got a fault.
    pub fn faults(&self) -> Vec<Entry> {
        self.log()
            .into_iter()
            .filter(|e| e.fault.is_some())
            .collect()
    }

    /// How many requests of `kind` arrived (including faulted ones).
    pub fn count(&self, kind: Kind) -> usize {
        self.shared
            .lock()
            .counts
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    /// Every multipart upload the server created (lost answers included).
    pub fn created_uploads(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|e| e.kind == Kind::CreateUpload && e.status == Some(200))
            .filter_map(|e| e.upload_id)
            .collect()
    }

    /// Uploads the server created that the client neither completed nor tried to abort: on S3
    /// they stay open (and billed) until a lifecycle rule removes them. (Garage may discard one
    /// by itself when another upload to the key completes, so a listing alone can miss them.)
    pub fn unresolved_uploads(&self) -> Vec<String> {
        let log = self.log();
        let resolved = |id: &str| {
            log.iter().any(|e| {
                e.upload_id.as_deref() == Some(id)
                    && match e.kind {
                        Kind::CompleteUpload => e.status == Some(200),
                        Kind::AbortUpload => e.status.is_some(),
                        _ => false,
                    }
            })
        };
        self.created_uploads()
            .into_iter()
            .filter(|id| !resolved(id))
            .collect()
    }

    /// Connections closed because the server was "down".
    pub fn refused(&self) -> usize {
        self.shared.lock().refused
    }

    /// The log as text, one request a line.
    pub fn log_text(&self) -> String {
        let st = self.shared.lock();
        let mut s = String::new();
        for e in &st.log {
            s.push_str(&format!("  {e}\n"));
        }
        s.push_str(&format!(
            "  ({} connection(s) refused while down)\n",
            st.refused
        ));
        s
    }

    /// Waits until a [`Fault::Hold`] request has reached the server and its response is held.
    pub fn wait_held(&self, timeout: Duration) -> Result<Entry> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(e) = st.held.first() {
                return Ok(e.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("no response was held within {timeout:?}");
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Sends every held response, and those held from now on, to the client; opens the gate.
    pub fn release(&self) {
        self.shared.lock().released = true;
        self.shared.changed.notify_all();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.release();
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if shared.is_down() {
                    shared.lock().refused += 1;
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let sh = Arc::clone(shared);
                let _ = std::thread::Builder::new()
                    .name("fault-proxy-conn".into())
                    .spawn(move || {
                        let _ = serve(client, &sh);
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break,
        }
    }
}

/// A request read from the client, kept as the bytes that came.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    /// Header lines as received, without the request line and the blank line.
    headers: Vec<(String, String)>,
    /// The body exactly as framed on the wire (chunk sizes included when chunked).
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request for the server: the same bytes, with `Connection: close`.
    fn forwarded(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Reads one request; None when the client closed the connection first.
fn read_request(r: &mut impl BufRead, client: &mut TcpStream) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad request line {line:?}"),
        ));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        // The client waits for this before sending the body; the server's own 100 is dropped.
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(r)?;
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(Some(req))
}

/// A chunked body, as the raw bytes on the wire (sizes, data, trailers).
fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    loop {
        let mut size_line = String::new();
        if r.read_line(&mut size_line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(size_line.as_bytes());
        let hex = size_line.trim().split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {hex:?}"),
            )
        })?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                raw.extend_from_slice(t.as_bytes());
                if t.trim_end_matches(['\r', '\n']).is_empty() {
                    return Ok(raw);
                }
            }
        }
        let start = raw.len();
        raw.resize(start + size + 2, 0);
        r.read_exact(raw.get_mut(start..).unwrap_or_default())?;
    }
}

/// The kind of a request and its object key, from the method and the path-style target.
pub fn classify(method: &str, target: &str) -> (Kind, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<&str> = query
        .split('&')
        .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
        .collect();
    let has = |name: &str| params.contains(&name);
    let path = path.trim_start_matches('/');
    let key = path.split_once('/').map_or("", |(_, k)| k);
    let key = percent_decode(key);
    let kind = match method {
        "POST" if has("uploads") => Kind::CreateUpload,
        "POST" if has("uploadId") => Kind::CompleteUpload,
        "PUT" if has("partNumber") && has("uploadId") => Kind::UploadPart,
        "DELETE" if has("uploadId") => Kind::AbortUpload,
        "PUT" if !key.is_empty() && key.ends_with(".manifest.json") => Kind::PutManifest,
        "PUT" if !key.is_empty() => Kind::PutObject,
        "GET" if key.is_empty() => Kind::List,
        _ => Kind::Other,
    };
    (kind, key)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// S3's answer to a client that should slow down.
pub fn slow_down_response(resource: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><Resource>{}</Resource><RequestId>fault-proxy</RequestId></Error>",
        resource
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    );
    format!(
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The server's whole response (it closes the connection after it), with informational
/// responses removed and `Connection: close` set; and its status code.
fn fetch(shared: &Shared, req: &Request) -> io::Result<(Vec<u8>, u16)> {
    let mut up = TcpStream::connect(("127.0.0.1", shared.upstream_port))?;
    up.set_read_timeout(Some(Duration::from_secs(300)))?;
    up.write_all(&req.forwarded())?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw)?;
    let mut rest = raw.as_slice();
    loop {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the server's response has no complete head",
            ));
        };
        let (head, body) = rest.split_at(end + 4);
        let head = String::from_utf8_lossy(head);
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let mut out = Vec::with_capacity(rest.len() + 20);
        for (i, line) in head.trim_end().split("\r\n").enumerate() {
            let lower = line.to_ascii_lowercase();
            if i > 0 && (lower.starts_with("connection:") || lower.starts_with("keep-alive:")) {
                continue;
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(body);
        return Ok((out, status));
    }
}

/// Forwards `req` and notes the server's answer in `entry`.
fn forward(shared: &Shared, req: &Request, entry: &mut Entry) -> io::Result<Vec<u8>> {
    let (resp, status) = fetch(shared, req)?;
    entry.status = Some(status);
    if entry.kind == Kind::CreateUpload {
        entry.upload_id = xml_text(&resp, "UploadId");
    }
    Ok(resp)
}

/// Serves one connection: one request, forwarded or faulted, then the connection is closed.
fn serve(mut client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut reader = BufReader::with_capacity(1 << 16, client.try_clone()?);
    let Some(req) = read_request(&mut reader, &mut client)? else {
        return Ok(());
    };
    if shared.plan.gated {
        let mut st = shared.lock();
        while !st.released {
            st = shared
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
    // During an outage nothing gets through, and nothing counts as an occurrence.
    if shared.is_down() {
        shared.lock().refused += 1;
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    let (kind, key) = classify(&req.method, &req.target);
    let (nth, fault) = shared.admit(kind);
    let mut entry = Entry {
        at_ms: shared.started.elapsed().as_millis(),
        kind,
        nth,
        key,
        fault,
        status: None,
        upload_id: query_param(&req.target, "uploadId"),
    };

    let reply = respond(shared, &req, &mut entry);
    // Logged before the client hears anything, so a client that has its answer (or its
    // closed connection) finds the request in the log.
    shared.record(entry);
    let result = match reply {
        Ok(Some(bytes)) => client.write_all(&bytes).and_then(|()| client.flush()),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    let _ = client.shutdown(Shutdown::Both);
    result
}

/// Does to one request what its fault says; returns what the client gets (None: a closed
/// connection).
fn respond(shared: &Shared, req: &Request, entry: &mut Entry) -> io::Result<Option<Vec<u8>>> {
    match entry.fault {
        Some(Fault::Drop | Fault::Down(_)) => Ok(None),
        Some(Fault::SlowDown) => Ok(Some(slow_down_response(&req.target))),
        Some(Fault::LostResponse) => forward(shared, req, entry).map(|_| None),
        Some(Fault::Delay(d)) => {
            let resp = forward(shared, req, entry)?;
            std::thread::sleep(d);
            Ok(Some(resp))
        }
        Some(Fault::Hold) => {
            let resp = forward(shared, req, entry)?;
            let mut st = shared.lock();
            st.held.push(entry.clone());
            shared.changed.notify_all();
            while !st.released {
                st = shared
                    .changed
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            Ok(Some(resp))
        }
        None => forward(shared, req, entry).map(Some),
    }
}

/// The (percent-decoded) value of query parameter `name` in a request target.
fn query_param(target: &str, name: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// The text of the first `<tag>` element in an XML answer.
fn xml_text(resp: &[u8], tag: &str) -> Option<String> {
    let text = String::from_utf8_lossy(resp);
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text.get(start..)?.find(&format!("</{tag}>"))?;
    text.get(start..start + len).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_like_s3() {
        let cases = [
            (
                "POST",
                "/evidence/p/c/h/t/disk.img.raw.zst?uploads&x-id=CreateMultipartUpload",
                Kind::CreateUpload,
            ),
            (
                "PUT",
                "/evidence/p/disk.raw.zst?x-id=UploadPart&partNumber=2&uploadId=abc",
                Kind::UploadPart,
            ),
            (
                "POST",
                "/evidence/p/disk.raw.zst?uploadId=abc&x-id=CompleteMultipartUpload",
                Kind::CompleteUpload,
            ),
            (
                "DELETE",
                "/evidence/p/disk.raw.zst?uploadId=abc&x-id=AbortMultipartUpload",
                Kind::AbortUpload,
            ),
            (
                "PUT",
                "/evidence/p/disk.manifest.json?x-id=PutObject",
                Kind::PutManifest,
            ),
            (
                "PUT",
                "/evidence/p/result.json?x-id=PutObject",
                Kind::PutObject,
            ),
            ("GET", "/evidence?list-type=2&prefix=p%2F", Kind::List),
            ("GET", "/evidence/?uploads&prefix=p", Kind::List),
            ("HEAD", "/evidence/p/disk.raw.zst", Kind::Other),
            ("GET", "/evidence/p/disk.raw.zst", Kind::Other),
        ];
        for (method, target, kind) in cases {
            assert_eq!(classify(method, target).0, kind, "{method} {target}");
        }
        assert_eq!(
            classify("PUT", "/b/a%20b/x.manifest.json").1,
            "a b/x.manifest.json"
        );
    }

    #[test]
    fn random_faults_depend_on_seed_kind_and_occurrence_only() {
        let r = RandomFaults {
            seed: 7,
            per_mille: 500,
            down: Some(Duration::from_secs(3)),
            max_delay: Duration::from_secs(2),
        };
        let a: Vec<_> = (1..200).map(|n| r.pick(Kind::UploadPart, n)).collect();
        let b: Vec<_> = (1..200).map(|n| r.pick(Kind::UploadPart, n)).collect();
        assert_eq!(a, b);
        let faulted = a.iter().filter(|f| f.is_some()).count();
        assert!((60..140).contains(&faulted), "{faulted} of 199 at 50%");
        // A part's response is never "lost": only Create, Complete and the manifest are.
        assert!(!a.contains(&Some(Fault::LostResponse)));
        assert!(
            (1..200)
                .map(|n| r.pick(Kind::CompleteUpload, n))
                .any(|f| f == Some(Fault::LostResponse))
        );
        let other = RandomFaults { seed: 8, ..r };
        let c: Vec<_> = (1..200).map(|n| other.pick(Kind::UploadPart, n)).collect();
        assert_ne!(a, c);
    }

    /// A stand-in server: answers every request with 200 and its body, counting requests.
    /// The requests a stand-in server saw, as forwarded.
    type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

    fn echo_server() -> Result<(u16, Seen)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let Ok(clone) = conn.try_clone() else { break };
                let mut r = BufReader::new(clone);
                if let Ok(Some(req)) = read_request(&mut r, &mut conn) {
                    let body = req.body.clone();
                    s.lock().unwrap().push(req.forwarded());
                    let _ = conn.write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .as_bytes(),
                    );
                    let _ = conn.write_all(&body);
                }
            }
        });
        Ok((port, seen))
    }

    fn send(port: u16, req: &[u8]) -> Result<Vec<u8>> {
        let mut c = TcpStream::connect(("127.0.0.1", port))?;
        c.write_all(req)?;
        let mut out = Vec::new();
        match c.read_to_end(&mut out) {
            // A connection closed with the request unread may end in a reset: no answer.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Vec::new()),
            r => r.map(|_| out).map_err(Into::into),
        }
    }

    #[test]
    fn forwards_bodies_faithfully_and_injects_faults() -> Result<()> {
        let (up, seen) = echo_server()?;
        let proxy = FaultProxy::start(
            up,
            Plan {
                script: vec![
                    Rule::nth(Kind::CompleteUpload, 1, Fault::LostResponse),
                    Rule::nth(Kind::CreateUpload, 1, Fault::SlowDown),
                    Rule::nth(Kind::UploadPart, 1, Fault::Drop),
                ],
                random: None,
                gated: false,
            },
        )?;
        // A chunked body reaches the server byte for byte and its answer comes back.
        let chunked = b"PUT /b/k?partNumber=1&uploadId=u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Encoding: aws-chunked\r\n\r\n5;chunk-signature=ab\r\nhello\r\n0\r\nx-amz-checksum-sha256: y\r\n\r\n";
        // The first part is dropped before it reaches the server: nothing comes back.
        assert!(send(proxy.port, chunked)?.is_empty());
        assert!(seen.lock().unwrap().is_empty());
        let reply = send(proxy.port, chunked)?;
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("Connection: close\r\n"), "{reply}");
        let body_sent = "5;chunk-signature=ab\r\nhello\r\n0\r\nx-amz-checksum-sha256: y\r\n\r\n";
        assert!(reply.ends_with(body_sent), "{reply}");
        let forwarded = String::from_utf8_lossy(&seen.lock().unwrap()[0]).into_owned();
        assert!(forwarded.ends_with(body_sent), "{forwarded}");
        // Create gets S3's SlowDown, and the server never hears of it.
        let create = send(
            proxy.port,
            b"POST /b/k?uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )?;
        let create = String::from_utf8_lossy(&create);
        assert!(create.starts_with("HTTP/1.1 503"), "{create}");
        assert!(
            create.contains(
                "<Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
            ),
            "{create}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
        // Complete reaches the server, but its answer is lost.
        let complete = send(
            proxy.port,
            b"POST /b/k?uploadId=u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        )?;
        assert!(complete.is_empty());
        assert_eq!(seen.lock().unwrap().len(), 2);
        let log = proxy.log();
        assert_eq!(log.len(), 4, "{}", proxy.log_text());
        assert_eq!(proxy.faults().len(), 3);
        assert_eq!(proxy.count(Kind::UploadPart), 2);
        Ok(())
    }

    #[test]
    fn a_held_response_waits_for_release_and_an_outage_refuses_everyone() -> Result<()> {
        let (up, seen) = echo_server()?;
        let proxy = FaultProxy::start(
            up,
            Plan {
                script: vec![
                    Rule::nth(Kind::PutManifest, 1, Fault::Hold),
                    Rule::nth(Kind::PutObject, 1, Fault::Down(Duration::from_secs(1))),
                ],
                random: None,
                gated: false,
            },
        )?;
        let port = proxy.port;
        let held = std::thread::spawn(move || {
            send(
                port,
                b"PUT /b/x.manifest.json HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
            )
        });
        let e = proxy.wait_held(Duration::from_secs(5))?;
        assert_eq!(e.kind, Kind::PutManifest);
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "held after the server saw it"
        );
        assert!(!held.is_finished());
        proxy.release();
        let reply = held.join().map_err(|_| anyhow::anyhow!("panicked"))??;
        assert!(reply.starts_with(b"HTTP/1.1 200"));

        let put = b"PUT /b/result.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        assert!(send(port, put)?.is_empty(), "the outage starts");
        let t = Instant::now();
        assert!(send(port, put)?.is_empty(), "still down");
        assert!(proxy.refused() >= 1);
        std::thread::sleep(Duration::from_millis(1100).saturating_sub(t.elapsed()));
        assert!(send(port, put)?.starts_with(b"HTTP/1.1 200"), "back up");
        Ok(())
    }
}
