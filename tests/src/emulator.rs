//! The controller's AWS world in moto (started by tests/scripts/moto.sh through moto_aws.py):
//! IAM roles and instance profiles, SNS topics read back through SQS, the repository's state
//! machine, and instances with volumes; the controller's handler runs against it.
//!
//! Roles, instance profiles, buckets and the controller's environment are those the
//! CloudFormation templates deploy ([`Deployment`]), and the controller calls AWS with a session
//! of its own role, as the Lambda does, so that moto records each call with the role that made
//! it ([`CallLog`]): [`Emulator::check_iam`] evaluates them against the templates' policies.

use airf_controller::aws::AwsCloud;
use airf_controller::{Config, handle};
use anyhow::{Context, Result};
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_ec2::types as ec2t;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::iam_calls::{CallLog, Deployment, assume_role, kept_logs_dir};
use crate::{S3Server, ServerKind, repo_root};

/// moto's account: every resource and ARN the emulator makes is in it.
pub const ACCOUNT: &str = "123456789012";
/// The region of every client, and of the evidence bucket.
pub const REGION: &str = "us-east-1";
/// The handler's clock, fixed so that the tags and names it writes can be compared exactly.
pub const NOW: &str = "2026-11-29T18:00:00Z";

/// moto with the controller's world in it, and the controller's handler pointed at it.
#[derive(Debug)]
pub struct Emulator {
    /// moto itself: the AWS APIs, the evidence bucket, and in its `env` the
    /// `AIRF_SSM_OUTPUT_DIR` where [`Emulator::answer_command`] leaves command results.
    pub server: S3Server,
    /// Runs the SDK calls; the helpers block on it so that tests stay synchronous.
    pub rt: tokio::runtime::Runtime,
    // Clients on moto for the tests' own set-up and checks, beside the handler's `cloud`.
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// KMS, where template 3's countersignature key was made.
    pub kms: aws_sdk_kms::Client,
    /// The handler's AWS access, built as the Lambda builds it (S3 path-style: moto is on an IP).
    pub cloud: AwsCloud,
    /// The handler's configuration, read from the variables the Lambda would have.
    pub config: Config,
    /// ARN of the repository's state machine in moto, where `start` begins executions.
    pub state_machine: String,
    /// SQS queues subscribed to the incident and the chat topic, in that order.
    pub queues: Vec<String>,
    /// moto's default VPC, its first subnet and that subnet's availability zone: where
    /// instances and volumes are made.
    pub vpc: String,
    pub subnet: String,
    pub az: String,
    /// What the templates deploy: the names the emulator created.
    pub deployment: Deployment,
    /// The calls moto served to the controller's (and the instances') roles.
    pub calls: CallLog,
}

/// The repository's workflow definition with the controller's Lambda ARN filled in.
pub(crate) fn workflow_definition() -> Result<String> {
    let path = repo_root().join("controller/workflow/airf-investigation.asl.json");
    let definition =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(definition.replace(
        "${ControllerFunctionArn}",
        &format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:airf-controller"),
    ))
}

/// An SNS topic with an SQS queue subscribed to it, so what is published can be read back:
/// (topic ARN, queue URL).
async fn topic_with_queue(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> Result<(String, String)> {
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
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"))
        .send()
        .await?;
    Ok((topic, queue))
}

/// A key as the template defines it (spec, usage, policy), with the id the rendered templates
/// give it (tests/scripts/moto_aws.py honours the tag), so its ARN is the one their policies and
/// the controller's environment name.
async fn create_key(kms: &aws_sdk_kms::Client, key: &crate::iam_calls::DeployedKey) -> Result<()> {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType, Tag};
    let made = kms
        .create_key()
        .key_spec(KeySpec::from(key.key_spec.as_str()))
        .key_usage(KeyUsageType::from(key.key_usage.as_str()))
        .description(&key.description)
        .policy(&key.policy)
        .tags(
            Tag::builder()
                .tag_key("airf:emulator-key-id")
                .tag_value(&key.id)
                .build()?,
        )
        .send()
        .await?;
    let arn = made
        .key_metadata()
        .and_then(|m| m.arn())
        .unwrap_or_default();
    anyhow::ensure!(
        arn == key.arn,
        "moto made the signing key {arn}, not {} (tests/scripts/moto_aws.py)",
        key.arn
    );
    Ok(())
}

fn role_policy() -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    .to_string()
}

/// The suspect's own role and profile: the account's, not airf's (no template names them).
pub const SUSPECT_ROLE: &str = "WebServerRole";
pub const SUSPECT_PROFILE: &str = "WebServer";

impl Emulator {
    /// Starts moto and creates roles, profiles, topics (with SQS subscribers) and the state
    /// machine.
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
        let kms = aws_sdk_kms::Client::new(&sdk);
        let deployment = Deployment::load()?;
        let (state_machine, incident, chat, vpc, subnet, az) = rt.block_on(async {
            // Managed policies first: a role's boundary must exist.
            for policy in &deployment.managed_policies {
                iam.create_policy()
                    .policy_name(&policy.name)
                    .policy_document(&policy.document)
                    .send()
                    .await?;
            }
            let airf_roles = deployment
                .roles
                .iter()
                .map(|r| (r.name.as_str(), r.trust.clone(), r.boundary.clone()));
            let suspect = std::iter::once((SUSPECT_ROLE, role_policy(), None));
            for (role, trust, boundary) in airf_roles.chain(suspect) {
                iam.create_role()
                    .role_name(role)
                    .assume_role_policy_document(trust)
                    .set_permissions_boundary(boundary)
                    .send()
                    .await?;
            }
            let airf_profiles = deployment
                .profiles
                .iter()
                .map(|p| (p.name.as_str(), p.roles.clone()));
            let suspect = std::iter::once((SUSPECT_PROFILE, vec![SUSPECT_ROLE.to_owned()]));
            for (profile, roles) in airf_profiles.chain(suspect) {
                iam.create_instance_profile()
                    .instance_profile_name(profile)
                    .send()
                    .await?;
                for role in roles {
                    iam.add_role_to_instance_profile()
                        .instance_profile_name(profile)
                        .role_name(role)
                        .send()
                        .await?;
                }
            }
            create_key(&kms, &deployment.signing_key).await?;
            let incident = topic_with_queue(&sns, &sqs, "airf-incident").await?;
            let chat = topic_with_queue(&sns, &sqs, "airf-chat").await?;
            let state_machine = sfn
                .create_state_machine()
                .name("airf-investigation")
                .definition(workflow_definition()?)
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
            anyhow::Ok((state_machine, incident, chat, vpc, subnet, az))
        })?;
        // The evidence and artifact buckets template 1 names, also for clients of the server's
        // environment (AIRF_TEST_BUCKET); the server's own bucket stays unused.
        let mut server = server;
        for bucket in [&deployment.evidence_bucket, &deployment.artifact_bucket] {
            server.aws(&["s3api", "create-bucket", "--bucket", bucket])?;
        }
        server.bucket = deployment.evidence_bucket.clone();
        for (k, v) in &mut server.env {
            if k == "AIRF_TEST_BUCKET" {
                v.clone_from(&deployment.evidence_bucket);
            }
        }
        // The controller's environment as template 3 gives it to the Lambda; the ARNs of what
        // the emulator made stand for those of the stack.
        let mut vars = deployment.controller_env.clone();
        vars.insert("AIRF_STATE_MACHINE_ARN".into(), state_machine.clone());
        vars.insert("AIRF_INCIDENT_TOPIC_ARN".into(), incident.0);
        vars.insert("AIRF_CHAT_TOPIC_ARN".into(), chat.0);
        vars.insert("AIRF_MEMBER_ACCOUNTS".into(), member_accounts.to_owned());
        // One invocation at a time answers every Task of a fleet (workflow_runner.rs): the
        // control-plane step's CloudTrail pace (500 ms) would cost each instance seconds.
        vars.insert("AIRF_LOOKUP_EVENTS_INTERVAL_MS".into(), "20".into());
        let config = Config::from_lookup(|k| vars.get(k).cloned())?;
        // The Lambda runs with a session of its role, named after the function.
        let controller_role = format!("arn:aws:iam::{ACCOUNT}:role/{}", deployment.controller_role);
        let session = rt.block_on(assume_role(&sdk, &controller_role, "airf-controller"))?;
        let controller_sdk = sdk
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(session),
            )
            .build();
        let cloud = AwsCloud::from_config(
            controller_sdk,
            config.member_role_name.clone(),
            REGION,
            true,
        );
        let calls = CallLog {
            path: server
                .env
                .iter()
                .find(|(k, _)| k == "AIRF_IAM_CALL_LOG")
                .map(|(_, v)| v.into())
                .context("tests/scripts/moto.sh set no AIRF_IAM_CALL_LOG")?,
        };
        Ok(Emulator {
            kms,
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
            queues: vec![incident.1, chat.1],
            vpc,
            subnet,
            az,
            deployment,
            calls,
        })
    }

    /// Evaluates every call recorded so far against the templates' policies: an error names
    /// each call they deny and the statement that denies it.
    pub fn check_iam(&self) -> Result<String> {
        self.calls.check()
    }

    /// Credentials of the acquisition role as the instance `instance_id` holds them (EC2 names
    /// an instance role's session after the instance), for the agent to run with.
    pub fn acquisition_credentials(&self, instance_id: &str) -> Result<Credentials> {
        self.role_credentials(&self.deployment.acquisition_role, instance_id)
    }

    /// Credentials of a session of the deployed role `name` (as ECS gives a task its task role).
    pub fn role_credentials(&self, name: &str, session: &str) -> Result<Credentials> {
        let role = format!("arn:aws:iam::{ACCOUNT}:role/{name}");
        let sdk = self.rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(self.server.endpoint()?)
                .region(Region::new(REGION))
                .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
                .load(),
        );
        self.rt.block_on(assume_role(&sdk, &role, session))
    }

    /// A running web server: profile WebServer, the default group, a root and a data volume.
    pub fn instance(&self, tags: &[(&str, &str)]) -> Result<String> {
        self.launch(tags, false)
    }

    /// [`Emulator::instance`], or a Spot instance (RunInstances with InstanceMarketOptions).
    pub(crate) fn launch(&self, tags: &[(&str, &str)], spot: bool) -> Result<String> {
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
                .set_instance_market_options(spot.then(|| {
                    ec2t::InstanceMarketOptionsRequest::builder()
                        .market_type(ec2t::MarketType::Spot)
                        .build()
                }))
                .iam_instance_profile(
                    ec2t::IamInstanceProfileSpecification::builder()
                        .name(SUSPECT_PROFILE)
                        .build(),
                )
                .tag_specifications(spec.build())
                .send()
                .await?;
            let instance = run.instances().first().context("no instance")?;
            anyhow::ensure!(
                !spot || instance.instance_lifecycle() == Some(&ec2t::InstanceLifecycleType::Spot),
                "moto did not launch a Spot instance: {instance:?}"
            );
            let id = instance.instance_id().context("instance id")?.to_owned();
            self.attach_data_volume(&id).await?;
            Ok(id)
        })
    }

    /// An image id to launch.
    pub async fn ami(&self) -> Result<String> {
        image(&self.ec2).await
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
        out.snapshots()
            .iter()
            .map(|s| {
                let id = s.snapshot_id().context("a snapshot without an id")?;
                let volume = s
                    .volume_id()
                    .with_context(|| format!("snapshot {id} names no volume"))?;
                Ok((id.to_owned(), volume.to_owned()))
            })
            .collect()
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

    /// Fails, showing its tags, unless the instance's SecurityIncidentStatus is `status`.
    pub fn ensure_status(&self, id: &str, status: &str) -> Result<()> {
        let tags = self.tags(id)?;
        anyhow::ensure!(
            tags.get("SecurityIncidentStatus").map(String::as_str) == Some(status),
            "{tags:?}"
        );
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

    /// The instance as DescribeInstances shows it; an error once it is gone.
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

    /// Calls the handler as the Lambda runtime would, with the emulator's clock.
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
            let input = d
                .input()
                .with_context(|| format!("execution {} has no input", e.name()))?;
            found.push((e.name().to_owned(), input.to_owned()));
        }
        Ok(found)
    }

    /// The input of the one execution begun so far.
    pub fn only_execution_input(&self) -> Result<Value> {
        let executions = self.executions()?;
        let [(_, input)] = executions.as_slice() else {
            anyhow::bail!("expected one execution, found {executions:?}");
        };
        Ok(serde_json::from_str(input)?)
    }

    /// SNS messages delivered since the last call, which consumes them: (index of the topic's
    /// queue in `queues`, subject or "" when it has none, message).
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
                    let body = m.body().context("an SQS message without a body")?;
                    let envelope: Value = serde_json::from_str(body)
                        .with_context(|| format!("not an SNS envelope: {body}"))?;
                    // SNS leaves Subject out when the publisher gave none.
                    let subject = envelope.get("Subject").and_then(Value::as_str);
                    let message = envelope
                        .get("Message")
                        .and_then(Value::as_str)
                        .with_context(|| format!("an SNS envelope without a message: {body}"))?;
                    found.push((i, subject.unwrap_or("").to_owned(), message.to_owned()));
                    let receipt = m
                        .receipt_handle()
                        .context("an SQS message without a receipt handle")?;
                    self.rt.block_on(
                        self.sqs
                            .delete_message()
                            .queue_url(q)
                            .receipt_handle(receipt)
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
            "version": "0",
            "id": format!("evt-{id}-{value}"),
            "detail-type": "Tag Change on Resource",
            "source": "aws.tag",
            "account": ACCOUNT,
            "time": "2026-11-29T17:59:30Z",
            "region": REGION,
            "resources": [format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{id}")],
            "detail": {
                "changed-tag-keys": ["SecurityIncidentStatus"],
                "service": "ec2",
                "resource-type": "instance",
                "version": 2,
                "tags": {"SecurityIncidentStatus": value, "Name": "web-1"}
            }
        })
    }

    /// Plays the instance's side of a command: its status and the document's output, for
    /// moto_aws.py's GetCommandInvocation to return.
    pub fn answer_command(
        &self,
        command_id: &str,
        status: &str,
        stdout: &str,
        stderr: &str,
    ) -> Result<()> {
        self.write_answer(&format!("{command_id}.json"), status, stdout, stderr)
    }

    /// Writes one answer file where moto_aws.py and moto_faults.py read them.
    pub(crate) fn write_answer(
        &self,
        file: &str,
        status: &str,
        stdout: &str,
        stderr: &str,
    ) -> Result<()> {
        let answer = json!({"status": status, "stdout": stdout, "stderr": stderr});
        std::fs::write(
            format!("{}/{file}", self.answers_dir()?),
            answer.to_string(),
        )?;
        Ok(())
    }

    /// The directory moto_aws.py and moto_faults.py read the tests' answers from.
    pub(crate) fn answers_dir(&self) -> Result<String> {
        self.server
            .env
            .iter()
            .find(|(k, _)| k == "AIRF_SSM_OUTPUT_DIR")
            .map(|(_, v)| v.clone())
            .context("no AIRF_SSM_OUTPUT_DIR")
    }
}

impl Drop for Emulator {
    /// Keeps the call log under the test's name for tests/run.sh's evaluation of every test's
    /// calls and its table (the server's directory goes with it).
    fn drop(&mut self) {
        let name = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        if let Err(e) = self.calls.keep(&kept_logs_dir(), &name) {
            eprintln!("emulator: the IAM call log of {name} was not kept: {e:#}");
        }
    }
}

/// An image id moto has, in the client's region.
pub(crate) async fn image(ec2: &aws_sdk_ec2::Client) -> Result<String> {
    let images = ec2.describe_images().send().await?;
    Ok(images
        .images()
        .first()
        .and_then(|i| i.image_id())
        .context("moto has no image")?
        .to_owned())
}

/// The VPC's main route table (the one serving every subnet without its own).
pub async fn main_route_table(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Result<String> {
    let tables = ec2
        .describe_route_tables()
        .filters(ec2t::Filter::builder().name("vpc-id").values(vpc).build())
        .filters(
            ec2t::Filter::builder()
                .name("association.main")
                .values("true")
                .build(),
        )
        .send()
        .await?;
    Ok(tables
        .route_tables()
        .first()
        .and_then(|t| t.route_table_id())
        .context("no main route table")?
        .to_owned())
}

/// A workflow step's payload as the state machine's Task state builds it:
/// `{"action": ..., "case_id": ..., "subject": ...}` and the fields of `extra`.
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
