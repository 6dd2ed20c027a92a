//! AWS's refusals and limits in the [`Emulator`], as tests/scripts/moto_faults.py makes moto
//! answer them: Spot instances (whose protection EC2 refuses), injected faults shaped as each
//! service sends them (throttling, AccessDenied), and per-step Run Command answers.

use anyhow::{Context, Result};
use aws_sdk_ec2::types as ec2t;
use serde_json::{Value, json};

use crate::emulator::Emulator;

impl Emulator {
    /// A running Spot instance (RunInstances with InstanceMarketOptions), otherwise as
    /// [`Emulator::instance`] makes one: profile WebServer, a root and a data volume.
    pub fn spot_instance(&self, tags: &[(&str, &str)]) -> Result<String> {
        self.launch(tags, true)
    }

    /// Makes the next `times` calls of `action` (`service:Action`, e.g.
    /// `ec2:ModifyInstanceAttribute`) fail with `code`, shaped as that service sends it.
    pub fn inject_fault(&self, action: &str, code: &str, times: u32) -> Result<()> {
        let path = format!("{}/faults.json", self.answers_dir()?);
        let mut faults: serde_json::Map<String, Value> = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Map::new(),
            Err(e) => return Err(e.into()),
        };
        faults.insert(action.to_owned(), json!([code, times]));
        std::fs::write(&path, Value::Object(faults).to_string())?;
        Ok(())
    }

    /// Faults injected by [`Emulator::inject_fault`] that have not fired yet: (action, times left).
    pub fn faults_left(&self) -> Result<Vec<(String, u64)>> {
        let path = format!("{}/faults.json", self.answers_dir()?);
        let faults: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        Ok(faults
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.get(1)?.as_u64()?)))
            .filter(|(_, left)| *left > 0)
            .collect())
    }

    /// Plays one step (plugin) of a command, e.g. a failed `DownloadAgent`, for
    /// GetCommandInvocation with that PluginName.
    pub fn answer_step(
        &self,
        command_id: &str,
        plugin: &str,
        status: &str,
        stdout: &str,
        stderr: &str,
    ) -> Result<()> {
        self.write_answer(
            &format!("{command_id}.{plugin}.json"),
            status,
            stdout,
            stderr,
        )
    }
}

/// An instance in `region` (not the evidence region) in a new VPC with no route out of it: only
/// the VPC's `local` route, in its main route table.
#[derive(Debug)]
pub struct RegionalInstance {
    /// EC2 on moto in that region.
    pub ec2: aws_sdk_ec2::Client,
    /// The instance.
    pub id: String,
    /// Its VPC.
    pub vpc: String,
    /// The VPC's main route table, which serves the instance's subnet.
    pub main_route_table: String,
}

impl Emulator {
    /// A running instance (profile WebServer) in a new VPC of `region` that has no internet or
    /// NAT gateway, no peering and no Transit Gateway.
    pub fn instance_without_egress(&self, region: &str) -> Result<RegionalInstance> {
        let ec2 = aws_sdk_ec2::Client::from_conf(
            self.ec2
                .config()
                .to_builder()
                .region(aws_config::Region::new(region.to_owned()))
                .build(),
        );
        self.rt.block_on(async {
            let vpc = ec2.create_vpc().cidr_block("10.9.0.0/16").send().await?;
            let vpc = vpc
                .vpc()
                .and_then(|v| v.vpc_id())
                .context("vpc")?
                .to_owned();
            let subnet = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block("10.9.1.0/24")
                .send()
                .await?;
            let subnet = subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .context("subnet")?
                .to_owned();
            let main_route_table = crate::emulator::main_route_table(&ec2, &vpc).await?;
            let ami = crate::emulator::image(&ec2).await?;
            let run = ec2
                .run_instances()
                .image_id(ami)
                .instance_type(ec2t::InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .subnet_id(&subnet)
                .iam_instance_profile(
                    ec2t::IamInstanceProfileSpecification::builder()
                        .name("WebServer")
                        .build(),
                )
                .send()
                .await?;
            let id = run
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .context("instance id")?
                .to_owned();
            anyhow::Ok(RegionalInstance {
                ec2: ec2.clone(),
                id,
                vpc,
                main_route_table,
            })
        })
    }
}
