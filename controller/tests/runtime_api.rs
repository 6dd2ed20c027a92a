//! The `bootstrap` binary as Lambda runs it: against a stand-in for the Lambda Runtime API on
//! 127.0.0.1 it fetches invocations, answers a valid event, reports a hostile one as
//! `Airf.BadInput` through the error endpoint, and refuses to start without its configuration.
//! `AIRF_BOOTSTRAP=/path/to/bootstrap` runs the same tests on another build (the static one that
//! packaging/build-controller.sh zips).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// One request the runtime made: (method, path, body).
type Seen = (String, String, String);

/// The invocations still to hand out, numbered.
type Events = std::iter::Enumerate<std::vec::IntoIter<String>>;

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, String::from_utf8_lossy(&body).into_owned()))
}

/// Serves `events` one per `next`, then holds `next` open; reports every other request.
///
/// Each connection gets its own thread: the runtime's HTTP client may open a second connection
/// while the first is still idle in its pool, and a server that serves one connection at a time
/// would then never read the second (the test hung for its whole timeout under load).
fn runtime_api(events: Vec<String>) -> std::io::Result<(u16, mpsc::Receiver<Seen>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::channel();
    let queue = Arc::new(Mutex::new(events.into_iter().enumerate()));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (queue, tx) = (Arc::clone(&queue), tx.clone());
            std::thread::spawn(move || serve(stream, &queue, &tx));
        }
    });
    Ok((port, rx))
}

/// One connection of the stand-in Runtime API, until the runtime closes it.
fn serve(stream: TcpStream, queue: &Mutex<Events>, tx: &mpsc::Sender<Seen>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some((method, path, body)) = read_request(&mut reader) {
        let response = if path.ends_with("/invocation/next") {
            let next = queue.lock().map(|mut q| q.next());
            let Ok(Some((n, event))) = next else {
                // No more work: hold the request as Lambda does between invocations.
                std::thread::sleep(Duration::from_secs(60));
                return;
            };
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-{n}\r\n\
                 Lambda-Runtime-Deadline-Ms: 4102444800000\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:111111111111:function:airf-controller\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\n\
                 Content-Length: {}\r\n\r\n{event}",
                event.len()
            )
        } else {
            let _ = tx.send((method, path, body));
            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n".to_owned()
        };
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn bootstrap(port: u16, with_config: bool) -> Command {
    // AIRF_BOOTSTRAP: test another build, e.g. the static one in dist/airf-controller.zip.
    let bin = std::env::var_os("AIRF_BOOTSTRAP")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_bootstrap").into());
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "airf-controller")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/airf-controller")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // Nothing listens here: the invocations below must not need AWS.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    if with_config {
        cmd.env(
            "AIRF_STATE_MACHINE_ARN",
            "arn:aws:states:us-east-1:111111111111:stateMachine:airf",
        )
        .env(
            "AIRF_INCIDENT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:111111111111:airf-incident",
        )
        .env("AIRF_EVIDENCE_BUCKET", "evidence")
        .env("AIRF_EVIDENCE_REGION", "us-east-1")
        .env("AIRF_ARTIFACT_BUCKET", "artifacts")
        .env("AIRF_AGENT_VERSION", "0.1.0")
        .env("AIRF_AGENT_SHA256", "ab".repeat(32))
        .env(
            "AIRF_SIGNING_KEY_ARN",
            "arn:aws:kms:us-east-1:111111111111:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        );
    }
    cmd
}

#[test]
fn invocations_are_answered_and_rejections_carry_the_error_type() {
    let ignored = r#"{"version":"0","id":"1","detail-type":"Tag Change on Resource","source":"aws.tag","account":"111111111111","time":"2026-11-29T17:59:30Z","region":"us-east-1","resources":["arn:aws:ec2:us-east-1:111111111111:instance/i-0123456789abcdef0"],"detail":{"changed-tag-keys":["SecurityIncidentStatus"],"service":"ec2","resource-type":"instance","tags":{"SecurityIncidentStatus":"InProgress"}}}"#;
    let hostile = r#"{"action":"contain","case_id":"../../x","subject":{"instance_id":"i-0123456789abcdef0","account":"111111111111","region":"us-east-1","claim":1}}"#;
    let (port, seen) = runtime_api(vec![ignored.to_owned(), hostile.to_owned()]).unwrap();
    let mut child = bootstrap(port, true)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = seen.recv_timeout(Duration::from_secs(60));
    let second = seen.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    // What bootstrap said, so a failure here shows why it did not answer.
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let (method, path, body) = first.unwrap_or_else(|e| {
        panic!("no answer to the first invocation ({e}); bootstrap's stderr:\n{stderr}")
    });
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/2018-06-01/runtime/invocation/req-0/response")
    );
    assert!(body.contains("\"ignored\""), "{body}");
    let (_, path, body) = second.unwrap_or_else(|e| {
        panic!("no answer to the second invocation ({e}); bootstrap's stderr:\n{stderr}")
    });
    assert_eq!(path, "/2018-06-01/runtime/invocation/req-1/error");
    let error: serde_json::Value = serde_json::from_str(&body).expect(&body);
    assert_eq!(
        error.get("errorType").and_then(|v| v.as_str()),
        Some("Airf.BadInput"),
        "{body}"
    );
    assert!(
        error
            .get("errorMessage")
            .and_then(|v| v.as_str())
            .is_some_and(|m| m.contains("case id")),
        "{body}"
    );
}

#[test]
fn missing_configuration_stops_the_runtime_and_names_the_variable() {
    let (port, _seen) = runtime_api(Vec::new()).unwrap();
    let out = bootstrap(port, false).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AIRF_STATE_MACHINE_ARN is not set"),
        "{stderr}"
    );
}
