//! The controller's AWS world in moto (started by tests/scripts/moto.sh through moto_aws.py):
//! IAM roles and instance profiles, SNS topics read back through SQS, the repository's state
//! machine, and instances with volumes; the controller's handler runs against it.

#![expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]

use airf_controller::aws::AwsCloud;
use airf_controller::{Config, handle};
use anyhow::{Context, Result};
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_ec2::types as ec2t;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::{S3Server, ServerKind, repo_root};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const NOW: &str = "2026-11-29T18:00:00Z";

/// moto with the controller's world in it, and the controller's handler pointed at it.
#[derive(Debug)]
pub struct Emulator {
    /// server.
    pub server: S3Server,
    /// rt.
    pub rt: tokio::runtime::Runtime,
    /// ec2.
    pub ec2: aws_sdk_ec2::Client,
    /// iam.
    pub iam: aws_sdk_iam::Client,
    /// sqs.
    pub sqs: aws_sdk_sqs::Client,
    /// sfn.
    pub sfn: aws_sdk_sfn::Client,
    /// autoscaling.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// elb.
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// cloud.
    pub cloud: AwsCloud,
    /// config.
    pub config: Config,
    /// state machine.
    pub state_machine: String,
    /// queues.
    pub queues: Vec<String>,
    /// vpc.
    pub vpc: String,
    /// subnet.
    pub subnet: String,
    /// az.
    pub az: String,
}

fn role_policy() -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    .to_string()
}

impl Emulator {
    /// Starts moto and creates roles, profiles, topics (with SQS subscribers) and the state machine.
    pub fn start(member_accounts: &str) -> Result<Self> {
        let server = S3Server::start(ServerKind::Moto)?;
        let endpoint = server.endpoint()?;
        let rt = tokio::runtime::Runtime::new()?;
        let sdk = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(&endpoint)
                .region(Region::new(REGION))
                .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
                .load(),
        );
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let iam = aws_sdk_iam::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let sfn = aws_sdk_sfn::Client::new(&sdk);
        let (state_machine, topics, queues, vpc, subnet, az) = rt.block_on(async {
            for (role, profile) in [
                ("AirfControllerAccess", None),
                (
                    "AirfAcquisitionRole",
                    Some("AirfAcquisitionInstanceProfile"),
                ),
                ("AirfIsolatedRole", Some("AirfIsolatedInstanceProfile")),
                ("WebServerRole", Some("WebServer")),
            ] {
                iam.create_role()
                    .role_name(role)
                    .assume_role_policy_document(role_policy())
                    .send()
                    .await?;
                if let Some(profile) = profile {
                    iam.create_instance_profile()
                        .instance_profile_name(profile)
                        .send()
                        .await?;
                    iam.add_role_to_instance_profile()
                        .instance_profile_name(profile)
                        .role_name(role)
                        .send()
                        .await?;
                }
            }
            let mut topics = Vec::new();
            let mut queues = Vec::new();
            for name in ["airf-incident", "airf-chat"] {
                let topic = sns
                    .create_topic()
                    .name(name)
                    .send()
                    .await?
                    .topic_arn()
                    .context("topic arn")?
                    .to_owned();
                let queue = sqs
                    .create_queue()
                    .queue_name(name)
                    .send()
                    .await?
                    .queue_url()
                    .context("queue url")?
                    .to_owned();
                let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}");
                sns.subscribe()
                    .topic_arn(&topic)
                    .protocol("sqs")
                    .endpoint(arn)
                    .send()
                    .await?;
                topics.push(topic);
                queues.push(queue);
            }
            let definition = std::fs::read_to_string(
                repo_root().join("controller/workflow/airf-investigation.asl.json"),
            )?
            .replace(
                "${ControllerFunctionArn}",
                &format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:airf-controller"),
            );
            let state_machine = sfn
                .create_state_machine()
                .name("airf-investigation")
                .definition(definition)
                .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/airf-workflow"))
                .send()
                .await?
                .state_machine_arn()
                .to_owned();
            let vpc = ec2
                .describe_vpcs()
                .send()
                .await?
                .vpcs()
                .first()
                .and_then(|v| v.vpc_id())
                .context("no default VPC")?
                .to_owned();
            let subnets = ec2
                .describe_subnets()
                .filters(ec2t::Filter::builder().name("vpc-id").values(&vpc).build())
                .send()
                .await?;
            let first = subnets.subnets().first().context("no subnet")?;
            let subnet = first.subnet_id().context("subnet id")?.to_owned();
            let az = first.availability_zone().context("az")?.to_owned();
            anyhow::Ok((state_machine, topics, queues, vpc, subnet, az))
        })?;
        let vars: BTreeMap<&str, String> = BTreeMap::from([
            ("AIRF_STATE_MACHINE_ARN", state_machine.clone()),
            (
                "AIRF_INCIDENT_TOPIC_ARN",
                topics.first().cloned().unwrap_or_default(),
            ),
            (
                "AIRF_CHAT_TOPIC_ARN",
                topics.get(1).cloned().unwrap_or_default(),
            ),
            ("AIRF_EVIDENCE_BUCKET", server.bucket.clone()),
            ("AIRF_EVIDENCE_REGION", REGION.to_owned()),
            ("AIRF_ARTIFACT_BUCKET", "artifacts".to_owned()),
            ("AIRF_AGENT_VERSION", "0.1.0".to_owned()),
            ("AIRF_AGENT_SHA256", "ab".repeat(32)),
            ("AIRF_MEMBER_ACCOUNTS", member_accounts.to_owned()),
        ]);
        let config = Config::from_lookup(|k| vars.get(k).cloned())?;
        let cloud =
            AwsCloud::from_config(sdk.clone(), config.member_role_name.clone(), REGION, true);
        Ok(Emulator {
            autoscaling: aws_sdk_autoscaling::Client::new(&sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            server,
            rt,
            ec2,
            iam,
            sqs,
            sfn,
            cloud,
            config,
            state_machine,
            queues,
            vpc,
            subnet,
            az,
        })
    }

    /// A running web server: profile WebServer, the default group, a root and a data volume.
    pub fn instance(&self, tags: &[(&str, &str)]) -> Result<String> {
        self.rt.block_on(async {
            let ami = self.ami().await?;
            let mut spec =
                ec2t::TagSpecification::builder().resource_type(ec2t::ResourceType::Instance);
            for (k, v) in tags {
                spec = spec.tags(ec2t::Tag::builder().key(*k).value(*v).build());
            }
            let run = self
                .ec2
                .run_instances()
                .image_id(ami)
                .instance_type(ec2t::InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .subnet_id(&self.subnet)
                .iam_instance_profile(
                    ec2t::IamInstanceProfileSpecification::builder()
                        .name("WebServer")
                        .build(),
                )
                .tag_specifications(spec.build())
                .send()
                .await?;
            let id = run
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .context("instance id")?
                .to_owned();
            self.attach_data_volume(&id).await?;
            Ok(id)
        })
    }

    /// An image id to launch.
    pub async fn ami(&self) -> Result<String> {
        let images = self.ec2.describe_images().send().await?;
        Ok(images
            .images()
            .first()
            .and_then(|i| i.image_id())
            .context("moto has no image")?
            .to_owned())
    }

    /// Snapshots tagged with the case: (snapshot id, volume id).
    pub fn case_snapshots(&self, case: &str) -> Result<Vec<(String, String)>> {
        let filter = ec2t::Filter::builder()
            .name("tag:airf:case")
            .values(case)
            .build();
        let out = sdk(self.rt.block_on(
            self.ec2
                .describe_snapshots()
                .owner_ids("self")
                .filters(filter)
                .send(),
        ))?;
        Ok(out
            .snapshots()
            .iter()
            .map(|s| {
                (
                    s.snapshot_id().unwrap_or_default().to_owned(),
                    s.volume_id().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }

    /// Security groups with this name.
    pub fn groups_named(&self, name: &str) -> Result<Vec<ec2t::SecurityGroup>> {
        let filter = ec2t::Filter::builder()
            .name("group-name")
            .values(name)
            .build();
        let out = sdk(self
            .rt
            .block_on(self.ec2.describe_security_groups().filters(filter).send()))?;
        Ok(out.security_groups().to_vec())
    }

    /// Attaches a new 8 GiB volume as /dev/sdf.
    pub async fn attach_data_volume(&self, id: &str) -> Result<()> {
        let vol = self
            .ec2
            .create_volume()
            .availability_zone(&self.az)
            .size(8)
            .send()
            .await?;
        let vol = vol.volume_id().context("volume id")?;
        self.ec2
            .attach_volume()
            .device("/dev/sdf")
            .instance_id(id)
            .volume_id(vol)
            .send()
            .await?;
        Ok(())
    }

    /// Sets one tag.
    pub fn tag(&self, id: &str, key: &str, value: &str) -> Result<()> {
        self.rt.block_on(
            self.ec2
                .create_tags()
                .resources(id)
                .tags(ec2t::Tag::builder().key(key).value(value).build())
                .send(),
        )?;
        Ok(())
    }

    /// The instance's tags.
    pub fn tags(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let inst = self.describe(id)?;
        Ok(inst
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect())
    }

    /// DescribeInstances.
    pub fn describe(&self, id: &str) -> Result<ec2t::Instance> {
        let out = self
            .rt
            .block_on(self.ec2.describe_instances().instance_ids(id).send())?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .cloned()
            .context("instance gone")
    }

    /// The associated instance profile's name.
    pub fn profile(&self, id: &str) -> Result<Option<String>> {
        let out = self.rt.block_on(
            self.ec2
                .describe_iam_instance_profile_associations()
                .filters(
                    ec2t::Filter::builder()
                        .name("instance-id")
                        .values(id)
                        .build(),
                )
                .send(),
        )?;
        Ok(out
            .iam_instance_profile_associations()
            .first()
            .and_then(|a| a.iam_instance_profile())
            .and_then(|p| p.arn())
            .map(|arn| arn.rsplit('/').next().unwrap_or(arn).to_owned()))
    }

    /// Calls the handler.
    pub fn invoke(&self, payload: Value) -> airf_controller::Result<Value> {
        self.rt
            .block_on(handle(&self.cloud, &self.config, payload, NOW))
    }

    /// Calls the handler; an error is a test failure.
    pub fn ok(&self, payload: Value) -> Result<Value> {
        self.invoke(payload.clone())
            .map_err(|e| anyhow::anyhow!("{} for {payload}: {e}", e.kind().error_type()))
    }

    /// Executions of the state machine: (name, input).
    pub fn executions(&self) -> Result<Vec<(String, String)>> {
        let out = self.rt.block_on(
            self.sfn
                .list_executions()
                .state_machine_arn(&self.state_machine)
                .send(),
        )?;
        let mut found = Vec::new();
        for e in out.executions() {
            let d = self.rt.block_on(
                self.sfn
                    .describe_execution()
                    .execution_arn(e.execution_arn())
                    .send(),
            )?;
            found.push((
                e.name().to_owned(),
                d.input().unwrap_or_default().to_owned(),
            ));
        }
        Ok(found)
    }

    /// SNS messages delivered so far: (topic queue index, subject, message).
    pub fn messages(&self) -> Result<Vec<(usize, String, String)>> {
        let mut found = Vec::new();
        for (i, q) in self.queues.iter().enumerate() {
            loop {
                let out = self.rt.block_on(
                    self.sqs
                        .receive_message()
                        .queue_url(q)
                        .max_number_of_messages(10)
                        .send(),
                )?;
                if out.messages().is_empty() {
                    break;
                }
                for m in out.messages() {
                    let envelope: Value = serde_json::from_str(m.body().unwrap_or("{}"))?;
                    found.push((
                        i,
                        envelope["Subject"].as_str().unwrap_or("").to_owned(),
                        envelope["Message"].as_str().unwrap_or("").to_owned(),
                    ));
                    self.rt.block_on(
                        self.sqs
                            .delete_message()
                            .queue_url(q)
                            .receipt_handle(m.receipt_handle().unwrap_or(""))
                            .send(),
                    )?;
                }
            }
        }
        Ok(found)
    }

    /// An EventBridge tag-change event for the instance.
    pub fn tag_event(&self, id: &str, value: &str) -> Value {
        json!({
            "version": "0", "id": format!("evt-{id}-{value}"), "detail-type": "Tag Change on Resource",
            "source": "aws.tag", "account": ACCOUNT, "time": "2026-11-29T17:59:30Z", "region": REGION,
            "resources": [format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{id}")],
            "detail": {"changed-tag-keys": ["SecurityIncidentStatus"], "service": "ec2",
                       "resource-type": "instance", "version": 2,
                       "tags": {"SecurityIncidentStatus": value, "Name": "web-1"}}
        })
    }

    /// Plays the instance's side of a command: the document's stdout, as SSM would keep it.
    pub fn answer_command(
        &self,
        command_id: &str,
        status: &str,
        stdout: &str,
        stderr: &str,
    ) -> Result<()> {
        let dir = self
            .server
            .env
            .iter()
            .find(|(k, _)| k == "AIRF_SSM_OUTPUT_DIR")
            .map(|(_, v)| v.clone())
            .context("no AIRF_SSM_OUTPUT_DIR")?;
        let answer = json!({"status": status, "stdout": stdout, "stderr": stderr});
        std::fs::write(format!("{dir}/{command_id}.json"), answer.to_string())?;
        Ok(())
    }
}

/// What a workflow run did.
#[derive(Debug)]
pub struct WorkflowRun {
    /// `{"status": "SUCCEEDED", "output": ...}` or `{"status": "FAILED", "error": ..., "cause": ...}`.
    pub outcome: Value,
    /// The `action` of every Task invocation, in order.
    pub actions: Vec<String>,
}

/// Reads one HTTP/1.1 request's body (Content-Length framed).
fn read_body(stream: &mut std::net::TcpStream) -> Result<Vec<u8>> {
    use std::io::{BufRead, Read};
    let mut reader = std::io::BufReader::new(stream);
    let mut length = 0usize;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

impl Emulator {
    /// Runs the repository's workflow definition with `input` in aws-local-stepfunctions
    /// (tests/workflow/run-local.cjs), every Task state invoking this emulator's handler.
    /// `instance_side(kind, command_id)` plays the instance after each `acquire`.
    pub fn run_workflow(
        &self,
        input: &Value,
        instance_side: impl Fn(&str, &str) -> Result<()> + Sync,
    ) -> Result<WorkflowRun> {
        use std::io::Write;
        let work = tempfile::tempdir()?;
        let definition = std::fs::read_to_string(
            repo_root().join("controller/workflow/airf-investigation.asl.json"),
        )?
        .replace(
            "${ControllerFunctionArn}",
            &format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:airf-controller"),
        );
        let (def_path, input_path) = (
            work.path().join("definition.json"),
            work.path().join("input.json"),
        );
        std::fs::write(&def_path, definition)?;
        std::fs::write(&input_path, input.to_string())?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let done = std::sync::atomic::AtomicBool::new(false);
        let actions = std::sync::Mutex::new(Vec::new());
        let output = std::thread::scope(|scope| {
            scope.spawn(|| {
                for stream in listener.incoming() {
                    if done.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let answer = match read_body(&mut stream).and_then(|b| Ok(serde_json::from_slice::<Value>(&b)?)) {
                        Err(e) => json!({"errorType": "Test.Harness", "errorMessage": e.to_string()}),
                        Ok(payload) => {
                            let action = payload["action"].as_str().unwrap_or("").to_owned();
                            if let Ok(mut a) = actions.lock() {
                                a.push(action.clone());
                            }
                            match self.invoke(payload.clone()) {
                                Ok(result) => {
                                    let played = if action == "acquire" {
                                        instance_side(payload["kind"].as_str().unwrap_or(""), result["command_id"].as_str().unwrap_or(""))
                                    } else {
                                        Ok(())
                                    };
                                    match played {
                                        Ok(()) => json!({ "result": result }),
                                        Err(e) => json!({"errorType": "Test.InstanceSide", "errorMessage": e.to_string()}),
                                    }
                                }
                                Err(e) => json!({"errorType": e.kind().error_type(), "errorMessage": e.to_string()}),
                            }
                        }
                    };
                    let body = answer.to_string();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
            let out = std::process::Command::new("node")
                .arg(repo_root().join("tests/workflow/run-local.cjs"))
                .arg(&def_path)
                .arg(&input_path)
                .arg(port.to_string())
                .output();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = std::net::TcpStream::connect(("127.0.0.1", port));
            out
        })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or("");
        let outcome: Value = serde_json::from_str(line).with_context(|| {
            format!(
                "tests/workflow/run-local.cjs printed no result (run tests/scripts/install-deps.sh):\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        let actions = actions.into_inner().unwrap_or_default();
        Ok(WorkflowRun { outcome, actions })
    }

    /// The input of the one execution `start` began.
    pub fn only_execution_input(&self) -> Result<Value> {
        let executions = self.executions()?;
        let [(_, input)] = executions.as_slice() else {
            anyhow::bail!("expected one execution, found {executions:?}");
        };
        Ok(serde_json::from_str(input)?)
    }
}

/// Runs a workflow step as the state machine's Task state would: `{"action": ..., case_id, subject}`.
pub fn step(action: &str, case_id: &str, subject: &Value, extra: Value) -> Value {
    let mut p = json!({"action": action, "case_id": case_id, "subject": subject});
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p
}

/// An SDK result with the service's own words on failure ("service error" says nothing).
pub fn sdk<T, E: std::error::Error + 'static>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("{}", aws_sdk_ec2::error::DisplayErrorContext(&e)))
}

/// IAM returns policy documents URL-encoded.
pub fn urlencoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
