//! SSM Run Command, played on this machine: what the SSM service and the SSM Agent do with a
//! `schemaVersion` 2.2 Command document, so that a document's real steps run end to end
//! without an EC2 instance. Written from the SSM Agent's source
//! (<https://github.com/aws/amazon-ssm-agent>); each behaviour names the file it follows.
//!
//! - Parameters (the service, at SendCommand): a value not given takes the parameter's
//!   `default`; a parameter without one, an unknown name, or a value its `allowedPattern`
//!   rejects refuses the command.
//! - `{{ Name }}` (`agent/parameters/parameters.go`, `ReplaceParameters`): every reference,
//!   with any spaces inside the braces, is replaced by the value exactly as given: no quoting,
//!   no escaping, so only `allowedPattern` stands between a value and the shell.
//! - `aws:downloadContent` with `sourceType` S3
//!   (`agent/plugins/downloadcontent/s3resource/s3resource.go`): a path ending in `/` is a
//!   folder, every object under it is fetched into `destinationPath`, and a folder holding
//!   none downloads nothing and succeeds (keys ending in `/` are never fetched); any other
//!   path is one object, written to `destinationPath` as a file name.
//! - `aws:runShellScript` (`agent/plugins/runscript/runshellscript.go` and `runscript.go`):
//!   the `runCommand` lines, joined by newlines, are written to
//!   `<orchestration dir>/<step name>/_script.sh` and run as `sh -c <that path>` in that
//!   directory, the shell made the leader of its own process group
//!   (`agent/executers/executers_unix.go`, `prepareProcess`). The script has no `#!`, so
//!   `sh -c FILE` runs it in a child `sh`.
//!
//! Not played: `timeoutSeconds` and `executionTimeout` (the agent then sends SIGKILL to the
//! process group, `killProcess` in `executers_unix.go`), the 24,000-character cut of the
//! output ([`STDOUT_LIMIT`]: checks compare against it), output to S3, preconditions (this is
//! Linux), and plugins other than those two.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use regex::Regex;
use serde_json::Value;

/// How much of a step's standard output GetCommandInvocation returns; the rest is cut off.
pub const STDOUT_LIMIT: usize = 24_000;

/// The file name the SSM Agent writes a shell step's script to.
const SCRIPT_NAME: &str = "_script.sh";

/// `{{ Name }}`: a reference to a parameter, the name captured.
pub fn parameter_reference() -> Result<Regex> {
    Ok(Regex::new(r"\{\{\s*([A-Za-z0-9_.:-]+)\s*\}\}")?)
}

/// Every parameter name referenced anywhere in `v`, added to `out`.
pub fn references(v: &Value, re: &Regex, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            for c in re.captures_iter(s) {
                if let Some(m) = c.get(1) {
                    out.insert(m.as_str().to_owned());
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, re, out)),
        Value::Object(o) => o.values().for_each(|x| references(x, re, out)),
        _ => {}
    }
}

/// The document's `parameters`.
pub fn parameters(doc: &Value) -> Result<&serde_json::Map<String, Value>> {
    doc.get("parameters")
        .and_then(Value::as_object)
        .context("no parameters")
}

/// A parameter's `allowedPattern`, compiled. SSM matches it against the whole value; it must
/// be anchored (`^…$`) so that a regex search here reads it the same way.
pub fn allowed_pattern(doc: &Value, name: &str) -> Result<Regex> {
    let p = parameters(doc)?
        .get(name)
        .and_then(|p| p.get("allowedPattern"))
        .and_then(Value::as_str)
        .with_context(|| format!("{name} has no allowedPattern"))?;
    ensure!(
        p.starts_with('^') && p.ends_with('$'),
        "{name}: pattern {p} is not anchored"
    );
    Regex::new(p).with_context(|| format!("{name}: pattern {p}"))
}

/// Every parameter's value as the service resolves it at SendCommand: `values` where given,
/// else the default; refused as the service would refuse it.
pub fn resolve(doc: &Value, values: &BTreeMap<&str, String>) -> Result<BTreeMap<String, String>> {
    let params = parameters(doc)?;
    for k in values.keys() {
        ensure!(params.contains_key(*k), "unknown parameter {k}");
    }
    let mut resolved = BTreeMap::new();
    for (name, p) in params {
        let value = match values.get(name.as_str()) {
            Some(v) => v.clone(),
            None => p
                .get("default")
                .and_then(Value::as_str)
                .with_context(|| format!("required parameter {name} not given"))?
                .to_owned(),
        };
        ensure!(
            allowed_pattern(doc, name)?.is_match(&value),
            "SSM would refuse {name}={value:?}"
        );
        resolved.insert(name.clone(), value);
    }
    Ok(resolved)
}

/// `text` with every `{{ Name }}` replaced by its value, as the agent does before a step runs.
pub fn substitute(text: &str, resolved: &BTreeMap<String, String>) -> Result<String> {
    let re = parameter_reference()?;
    let mut missing = None;
    let out = re.replace_all(text, |c: &regex::Captures| {
        let key = c.get(1).map_or("", |m| m.as_str());
        resolved.get(key).cloned().unwrap_or_else(|| {
            missing = Some(key.to_owned());
            String::new()
        })
    });
    // The agent would leave an unknown reference in place; the service refuses such a
    // document at creation, so here it is an error.
    if let Some(m) = missing {
        bail!("unknown parameter {m}");
    }
    Ok(out.into_owned())
}

/// SIGTERM to a running shell step, as when the instance shuts down or the SSM Agent's service
/// is stopped.
#[derive(Debug, Clone, Copy)]
pub struct Sigterm {
    /// The signal waits (at most a minute) until a process runs whose command line, its
    /// arguments separated by NUL, satisfies this...
    pub once_running: fn(&str) -> bool,
    /// ...and then this long.
    pub after: Duration,
}

/// The instance side of a command: what the steps find there.
#[derive(Debug)]
pub struct Instance<'a> {
    /// The shell the steps run with. The agent runs `sh`, which is dash on Debian and Ubuntu
    /// but bash on Amazon Linux and RHEL: run with both.
    pub shell: &'a str,
    /// The shell step's environment beyond this process's own (an instance has the agent's;
    /// here, e.g., the S3 server's endpoint and credentials).
    pub env: &'a [(String, String)],
    /// What `aws:downloadContent` finds in S3: `https://BUCKET.s3.REGION.amazonaws.com/KEY`
    /// → the local file that object holds.
    pub objects: &'a BTreeMap<String, PathBuf>,
    /// A SIGTERM sent during the shell step, if any.
    pub sigterm: Option<Sigterm>,
}

/// What the command's last shell step reported, as GetCommandInvocation would show it.
#[derive(Debug)]
pub struct Invocation {
    /// The step's exit status (-1 when a signal ended it).
    pub code: i32,
    /// Its whole standard output (SSM keeps the first [`STDOUT_LIMIT`] characters).
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// The last line of stdout, parsed; Null when it is not JSON.
    pub json: Value,
}

impl Instance<'_> {
    /// Runs `doc` with `values` for its parameters, step by step, as SSM Run Command would.
    pub fn run(&self, doc: &Value, values: &BTreeMap<&str, String>) -> Result<Invocation> {
        let resolved = resolve(doc, values)?;
        let orchestration = tempfile::Builder::new().prefix("airf-ssm-").tempdir()?;
        let mut last = None;
        let steps = doc
            .get("mainSteps")
            .and_then(Value::as_array)
            .context("mainSteps")?;
        for step in steps {
            let name = step.get("name").and_then(Value::as_str).context("name")?;
            let inputs = step.get("inputs").context("inputs")?;
            let input = |key: &str| -> Result<String> {
                let text = inputs
                    .get(key)
                    .and_then(Value::as_str)
                    .with_context(|| format!("{name}: no {key}"))?;
                substitute(text, &resolved)
            };
            match step.get("action").and_then(Value::as_str) {
                Some("aws:downloadContent") => {
                    let info: Value = serde_json::from_str(&input("sourceInfo")?)?;
                    let path = info
                        .get("path")
                        .and_then(Value::as_str)
                        .context("sourceInfo.path")?;
                    self.download(path, Path::new(&input("destinationPath")?))
                        .with_context(|| format!("{name}: downloading {path}"))?;
                }
                Some("aws:runShellScript") => {
                    let lines = inputs
                        .get("runCommand")
                        .and_then(Value::as_array)
                        .context("runCommand")?;
                    let mut script = String::new();
                    for l in lines {
                        script.push_str(&substitute(
                            l.as_str().context("runCommand line")?,
                            &resolved,
                        )?);
                        script.push('\n');
                    }
                    last = Some(self.run_shell(&orchestration.path().join(name), &script)?);
                }
                other => bail!("{name}: the emulation has no plugin {other:?}"),
            }
        }
        last.context("the document has no shell step")
    }

    /// `aws:downloadContent` from S3: a folder (`…/`) or one object.
    fn download(&self, path: &str, dest: &Path) -> Result<()> {
        if path.ends_with('/') {
            for (url, file) in self.objects.range(path.to_owned()..) {
                let Some(rest) = url.strip_prefix(path) else {
                    break;
                };
                let target = dest.join(rest);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(file, &target)?;
            }
            return Ok(());
        }
        let file = self
            .objects
            .get(path)
            .with_context(|| format!("no object at {path}"))?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(file, dest)?;
        Ok(())
    }

    /// `aws:runShellScript`: `script` written to `dir/_script.sh` and run there.
    fn run_shell(&self, dir: &Path, script: &str) -> Result<Invocation> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(SCRIPT_NAME);
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        let child = Command::new(self.shell)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("-c")
            .arg(&path)
            .current_dir(dir)
            .stdin(Stdio::null())
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.shell))?;
        if let Some(sigterm) = self.sigterm {
            wait_for(sigterm.once_running, Duration::from_secs(60))?;
            std::thread::sleep(sigterm.after);
            // Signal the child `sh` running the script (not the programs it started), so that
            // only the script's own trap can pass the signal on.
            let script = path.display().to_string();
            let mut targets = processes(|cmdline| cmdline.contains(&script))?;
            targets.retain(|p| *p != child.id());
            if targets.is_empty() {
                targets.push(child.id());
            }
            for pid in targets {
                kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGTERM)?;
            }
        }
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        Ok(Invocation {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            json,
        })
    }
}

/// Pids of the processes whose command line (arguments separated by NUL) satisfies `matches`.
pub fn processes(matches: impl Fn(&str) -> bool) -> Result<Vec<u32>> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc")? {
        let e = e?;
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // A process may end between the listing and this read: it then matches nothing.
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if matches(&String::from_utf8_lossy(&cmdline)) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Waits until a process whose command line satisfies `matches` runs.
fn wait_for(matches: fn(&str) -> bool, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !processes(matches)?.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("no process to signal started within {limit:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "schemaVersion": "2.2",
            "parameters": {
                "Name": {"type": "String", "allowedPattern": "^[a-z]+$"},
                "Greeting": {"type": "String", "allowedPattern": "^[a-z]*$", "default": "hi"}
            },
            "mainSteps": []
        })
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let resolved = resolve(&doc(), &BTreeMap::from([("Name", "web".to_owned())])).unwrap();
        assert_eq!(resolved["Name"], "web");
        assert_eq!(resolved["Greeting"], "hi");
    }

    #[test]
    fn the_service_refuses_what_ssm_would() {
        let doc = doc();
        assert!(resolve(&doc, &BTreeMap::new()).is_err(), "required Name");
        let bad = BTreeMap::from([("Name", "web;id".to_owned())]);
        assert!(resolve(&doc, &bad).is_err(), "pattern");
        let unknown = BTreeMap::from([("Name", "web".to_owned()), ("Other", "x".to_owned())]);
        assert!(resolve(&doc, &unknown).is_err(), "unknown parameter");
    }

    #[test]
    fn references_are_replaced_literally_with_any_spaces() {
        let resolved = BTreeMap::from([("Name".to_owned(), "a b'c".to_owned())]);
        assert_eq!(
            substitute("x={{Name}} y={{   Name }}", &resolved).unwrap(),
            "x=a b'c y=a b'c"
        );
        assert!(substitute("{{ Other }}", &resolved).is_err());
    }

    #[test]
    fn a_folder_without_objects_downloads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent");
        std::fs::write(&file, b"binary").unwrap();
        let objects = BTreeMap::from([(
            "https://b.s3.r.amazonaws.com/agent/1/airf-agent".to_owned(),
            file,
        )]);
        let instance = Instance {
            shell: "sh",
            env: &[],
            objects: &objects,
            sigterm: None,
        };
        let dest = dir.path().join("dl");
        instance
            .download("https://b.s3.r.amazonaws.com/lime//", &dest)
            .unwrap();
        assert!(!dest.exists());
        instance
            .download("https://b.s3.r.amazonaws.com/agent/", &dest)
            .unwrap();
        assert_eq!(std::fs::read(dest.join("1/airf-agent")).unwrap(), b"binary");
        let file_dest = dir.path().join("one/airf-agent");
        instance
            .download(
                "https://b.s3.r.amazonaws.com/agent/1/airf-agent",
                &file_dest,
            )
            .unwrap();
        assert_eq!(std::fs::read(&file_dest).unwrap(), b"binary");
        assert!(
            instance
                .download("https://b.s3.r.amazonaws.com/missing", &file_dest)
                .is_err()
        );
    }

    #[test]
    fn a_shell_step_runs_its_script_in_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let objects = BTreeMap::new();
        let env = [("AIRF_TEST_VALUE".to_owned(), "42".to_owned())];
        let instance = Instance {
            shell: "sh",
            env: &env,
            objects: &objects,
            sigterm: None,
        };
        let run = instance
            .run_shell(
                &dir.path().join("step"),
                concat!(
                    "echo \"$AIRF_TEST_VALUE $(basename \"$PWD\")\" >&2\n",
                    "echo '{\"ok\": true}'\n",
                    "exit 3\n",
                ),
            )
            .unwrap();
        assert_eq!(run.code, 3);
        assert_eq!(run.stderr, "42 step\n");
        assert_eq!(run.json, json!({"ok": true}));
        assert!(dir.path().join("step/_script.sh").exists());
    }
}
