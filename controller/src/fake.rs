//! An in-memory [`Cloud`] for unit tests: instances, tags, groups, profiles, snapshots and a log
//! of every call, so tests assert both the end state and that nothing else was touched.

use crate::cloud::{Cloud, Invocation, Started, TargetRegistration};
use crate::error::{Error, Result};
use crate::model::{InstanceFacts, InstanceState, Interface, ProfileAssociation, Target, Volume};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A running instance with one interface and one root volume, in 111111111111/eu-west-1.
pub fn facts(instance_id: &str) -> InstanceFacts {
    InstanceFacts {
        target: Target {
            instance_id: instance_id.into(),
            account: "111111111111".into(),
            region: "eu-west-1".into(),
        },
        state: InstanceState::Running,
        tags: BTreeMap::new(),
        vpc_id: Some("vpc-1".into()),
        interfaces: vec![Interface {
            id: "eni-1".into(),
            groups: vec!["sg-web".into()],
        }],
        volumes: vec![Volume {
            id: "vol-1".into(),
            device: "/dev/xvda".into(),
            delete_on_termination: true,
        }],
        profile: None,
    }
}

/// Recorded state.
#[derive(Debug, Default)]
pub struct State {
    /// Instances by id.
    pub instances: BTreeMap<String, InstanceFacts>,
    /// Every call, in order, as `Operation detail`.
    pub calls: Vec<String>,
    /// Security groups: (vpc, name) → id.
    pub groups: BTreeMap<(String, String), String>,
    /// Started executions: name → input.
    pub executions: BTreeMap<String, String>,
    /// Published messages: (topic, subject, message).
    pub published: Vec<(String, String, String)>,
    /// Whether SSM sees instances.
    pub ssm_online: bool,
    /// S3 objects.
    pub objects: BTreeMap<(String, String), Vec<u8>>,
    /// Snapshots: (volume, snapshot).
    pub snapshots: Vec<(String, String)>,
    /// Protected instances.
    pub protected: Vec<String>,
    /// Inline role policies: (role, policy name) → document.
    pub role_policies: BTreeMap<(String, String), String>,
    /// Next GetCommandInvocation answer.
    pub invocation: Option<Invocation>,
    /// Fail the first call whose log line starts with this, once.
    pub fail_on: Option<(String, bool)>,
}

/// The fake.
#[derive(Debug, Default)]
pub struct FakeCloud {
    /// Its state.
    pub state: Mutex<State>,
}

impl FakeCloud {
    /// A cloud holding one instance.
    pub fn with(instance: InstanceFacts) -> Self {
        let cloud = FakeCloud::default();
        cloud
            .lock()
            .instances
            .insert(instance.target.instance_id.clone(), instance);
        cloud
    }

    /// The state, locked.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn call(&self, line: String) -> Result<()> {
        let mut s = self.lock();
        if let Some((prefix, retryable)) = s.fail_on.clone()
            && line.starts_with(&prefix)
        {
            s.fail_on = None;
            return Err(Error::Aws {
                operation: "fake",
                message: format!("injected failure at {line}"),
                retryable,
            });
        }
        s.calls.push(line);
        Ok(())
    }

    fn with_instance<T>(
        &self,
        target: &Target,
        f: impl FnOnce(&mut InstanceFacts) -> T,
    ) -> Result<T> {
        let mut s = self.lock();
        let inst = s
            .instances
            .get_mut(&target.instance_id)
            .ok_or_else(|| Error::Aws {
                operation: "fake",
                message: "InvalidInstanceID.NotFound".into(),
                retryable: false,
            })?;
        Ok(f(inst))
    }
}

impl Cloud for FakeCloud {
    async fn describe_instance(&self, target: &Target) -> Result<Option<InstanceFacts>> {
        Ok(self
            .lock()
            .instances
            .get(&target.instance_id)
            .filter(|i| i.target == *target)
            .cloned())
    }
    async fn tag_instance(&self, target: &Target, tags: &BTreeMap<String, String>) -> Result<()> {
        self.call(format!("CreateTags {} {tags:?}", target.instance_id))?;
        self.with_instance(target, |i| i.tags.extend(tags.clone()))
    }
    async fn associate_profile(&self, target: &Target, profile_name: &str) -> Result<()> {
        self.call(format!(
            "AssociateIamInstanceProfile {} {profile_name}",
            target.instance_id
        ))?;
        self.with_instance(target, |i| {
            i.profile = Some(ProfileAssociation {
                association_id: "iip-assoc-fake".into(),
                profile_arn: format!(
                    "arn:aws:iam::{}:instance-profile/{profile_name}",
                    target.account
                ),
            });
        })
    }
    async fn replace_profile(
        &self,
        target: &Target,
        association_id: &str,
        profile_name: &str,
    ) -> Result<()> {
        self.call(format!(
            "ReplaceIamInstanceProfileAssociation {association_id} {profile_name}"
        ))?;
        self.with_instance(target, |i| {
            i.profile = Some(ProfileAssociation {
                association_id: association_id.into(),
                profile_arn: format!(
                    "arn:aws:iam::{}:instance-profile/{profile_name}",
                    target.account
                ),
            });
        })
    }
    async fn ssm_online(&self, _target: &Target) -> Result<bool> {
        Ok(self.lock().ssm_online)
    }
    async fn send_command(
        &self,
        target: &Target,
        document: &str,
        parameters: &BTreeMap<String, Vec<String>>,
        _timeout: i32,
        _comment: &str,
    ) -> Result<String> {
        self.call(format!(
            "SendCommand {} {document} {parameters:?}",
            target.instance_id
        ))?;
        Ok(format!("cmd-{document}"))
    }
    async fn command_invocation(
        &self,
        _target: &Target,
        command_id: &str,
        _plugin: &str,
    ) -> Result<Invocation> {
        self.lock()
            .invocation
            .clone()
            .ok_or_else(|| Error::failed(format!("no invocation for {command_id}")))
    }
    async fn ensure_security_group(
        &self,
        target: &Target,
        vpc_id: &str,
        name: &str,
        allow_all: bool,
    ) -> Result<String> {
        let key = (vpc_id.to_owned(), name.to_owned());
        if let Some(id) = self.lock().groups.get(&key) {
            return Ok(id.clone());
        }
        self.call(format!(
            "CreateSecurityGroup {vpc_id} {name} allow_all={allow_all} ({})",
            target.instance_id
        ))?;
        let id = format!("sg-{name}");
        self.lock().groups.insert(key, id.clone());
        Ok(id)
    }
    async fn set_interface_groups(
        &self,
        target: &Target,
        interface_id: &str,
        groups: &[String],
    ) -> Result<()> {
        self.call(format!(
            "ModifyNetworkInterfaceAttribute {interface_id} {groups:?}"
        ))?;
        self.with_instance(target, |i| {
            for eni in i.interfaces.iter_mut().filter(|e| e.id == interface_id) {
                eni.groups = groups.to_vec();
            }
        })
    }
    async fn protect(&self, target: &Target) -> Result<()> {
        self.call(format!(
            "ModifyInstanceAttribute {} protect",
            target.instance_id
        ))?;
        self.lock().protected.push(target.instance_id.clone());
        Ok(())
    }
    async fn keep_volumes(&self, target: &Target, devices: &[String]) -> Result<()> {
        self.call(format!(
            "ModifyInstanceAttribute {} keep {devices:?}",
            target.instance_id
        ))?;
        self.with_instance(target, |i| {
            for v in i.volumes.iter_mut().filter(|v| devices.contains(&v.device)) {
                v.delete_on_termination = false;
            }
        })
    }
    async fn case_snapshots(
        &self,
        _target: &Target,
        _case_id: &str,
    ) -> Result<Vec<(String, String)>> {
        Ok(self.lock().snapshots.clone())
    }
    async fn snapshot(
        &self,
        _target: &Target,
        volume_id: &str,
        _description: &str,
        _tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        self.call(format!("CreateSnapshot {volume_id}"))?;
        let id = format!("snap-{volume_id}");
        self.lock()
            .snapshots
            .push((volume_id.to_owned(), id.clone()));
        Ok(id)
    }
    async fn profile_roles(&self, _target: &Target, profile_name: &str) -> Result<Vec<String>> {
        Ok(vec![format!("{profile_name}Role")])
    }
    async fn put_role_policy(
        &self,
        _target: &Target,
        role_name: &str,
        policy_name: &str,
        policy_document: &str,
    ) -> Result<()> {
        self.call(format!("PutRolePolicy {role_name} {policy_name}"))?;
        self.lock().role_policies.insert(
            (role_name.to_owned(), policy_name.to_owned()),
            policy_document.to_owned(),
        );
        Ok(())
    }
    async fn auto_scaling_group(&self, target: &Target) -> Result<Option<String>> {
        Ok(self
            .lock()
            .instances
            .get(&target.instance_id)
            .and_then(|i| i.tags.get("aws:autoscaling:groupName").cloned()))
    }
    async fn detach_from_auto_scaling_group(&self, target: &Target, group: &str) -> Result<()> {
        self.call(format!("DetachInstances {group} {}", target.instance_id))
    }
    async fn target_registrations(&self, _target: &Target) -> Result<Vec<TargetRegistration>> {
        Ok(Vec::new())
    }
    async fn deregister(&self, target: &Target, registration: &TargetRegistration) -> Result<()> {
        self.call(format!(
            "DeregisterTargets {} {}",
            registration.target_group_arn, target.instance_id
        ))
    }
    async fn start_execution(&self, _arn: &str, name: &str, input: &str) -> Result<Started> {
        self.call(format!("StartExecution {name}"))?;
        let mut s = self.lock();
        match s.executions.get(name) {
            Some(existing) if existing == input => {
                Ok(Started::Execution(format!("arn:execution:{name}")))
            }
            Some(_) => Ok(Started::AlreadyExists),
            None => {
                s.executions.insert(name.to_owned(), input.to_owned());
                Ok(Started::Execution(format!("arn:execution:{name}")))
            }
        }
    }
    async fn publish(&self, topic_arn: &str, subject: &str, message: &str) -> Result<()> {
        self.call(format!("Publish {topic_arn}"))?;
        self.lock()
            .published
            .push((topic_arn.into(), subject.into(), message.into()));
        Ok(())
    }
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .lock()
            .objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned())
    }
    async fn object_size(&self, bucket: &str, key: &str) -> Result<Option<u64>> {
        Ok(self
            .lock()
            .objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|o| o.len() as u64))
    }
}
