//! HTTPS to S3 with the agent's own trust policy: a TLS front (socat with a certificate from a
//! throw-away CA) before Garage. Trusted through `SSL_CERT_FILE` (the system-store path, as on
//! a host whose CA store holds a corporate proxy's CA) the upload works; with no system store
//! the bundled Mozilla roots are used, and a certificate they do not vouch for is refused with
//! a message that names the certificate problem.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airf_e2e::{S3Server, ServerKind, agent_bin, run_agent};
use anyhow::{Context, Result, bail, ensure};

/// A TLS terminator on 127.0.0.1 forwarding to a plain-HTTP port; killed on drop.
struct TlsFront {
    child: Child,
    port: u16,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running openssl")?;
    ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A CA and a server certificate for 127.0.0.1 signed by it: `ca.pem`, `server.pem`,
/// `server.key` in `dir`.
fn make_certificates(dir: &Path) -> Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=airf test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    )?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    )
}

fn tls_front(dir: &Path, backend_port: &str) -> Result<TlsFront> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        ))
        .arg(format!("TCP:127.0.0.1:{backend_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting socat (tests/scripts/install-deps.sh installs it)")?;
    let front = TlsFront { child, port };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("socat did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(front)
}

#[test]
fn https_upload_trusts_the_system_store_and_falls_back_to_bundled_roots() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let endpoint = server.endpoint()?;
    let backend_port = endpoint.rsplit(':').next().context("endpoint port")?;
    let dir = tempfile::tempdir()?;
    make_certificates(dir.path())?;
    let front = tls_front(dir.path(), backend_port)?;
    let https = format!("https://127.0.0.1:{}", front.port);
    let empty_dir = dir.path().join("no-certs");
    std::fs::create_dir(&empty_dir)?;
    std::fs::write(dir.path().join("empty.pem"), "")?;

    let acquire = |cert_file: &Path, prefix: &str| {
        run_agent(
            server
                .command(agent_bin()?)
                .env("AIRF_LOG", "info")
                .env("SSL_CERT_FILE", cert_file)
                .env("SSL_CERT_DIR", &empty_dir)
                .env("AWS_MAX_ATTEMPTS", "1")
                .args(["disk", "/etc/hostname", "--to"])
                .arg(format!("s3://{}/{prefix}/", server.bucket))
                .args(["--endpoint-url", &https, "--abort-timeout", "5", "--json"]),
        )
    };

    // The CA is in the "system store" (SSL_CERT_FILE): the upload goes through TLS.
    let run = acquire(&dir.path().join("ca.pem"), "trusted")?;
    ensure!(run.code == 0, "{run:?}");
    ensure!(
        run.stderr.contains("from the system store"),
        "{}",
        run.stderr
    );
    ensure!(
        server
            .keys("trusted/")?
            .iter()
            .any(|k| k.ends_with(".manifest.json")),
        "no manifest stored over HTTPS"
    );

    // No system store: the bundled roots, which do not know this CA.
    let run = acquire(&dir.path().join("empty.pem"), "untrusted")?;
    ensure!(run.code == 1, "{run:?}");
    ensure!(
        run.stderr.contains("bundled Mozilla root"),
        "{}",
        run.stderr
    );
    ensure!(
        run.stderr.contains("TLS certificate is not trusted")
            && run.stderr.contains("SSL_CERT_FILE"),
        "the error must name the certificate problem and the fix: {}",
        run.stderr
    );
    ensure!(server.keys("untrusted/")?.is_empty());
    Ok(())
}
