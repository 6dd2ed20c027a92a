//! [`Cloud`] for [`AwsCloud`]: each operation sent to its service's module, on the member role's
//! clients for the instance's account and region, or on the controller's own.

use super::{AwsCloud, autoscaling, ec2, elbv2, iam, s3, sfn, sns, ssm};
use crate::cloud::{Cloud, Invocation, Started, TargetRegistration};
use crate::error::Result;
use crate::model::{InstanceFacts, Target};
use std::collections::BTreeMap;

impl Cloud for AwsCloud {
    async fn describe_instance(&self, target: &Target) -> Result<Option<InstanceFacts>> {
        ec2::describe_instance(&*self.member(target).await?, target).await
    }

    async fn tag_instance(&self, target: &Target, tags: &BTreeMap<String, String>) -> Result<()> {
        ec2::tag_instance(&*self.member(target).await?, target, tags).await
    }

    async fn associate_profile(&self, target: &Target, profile_name: &str) -> Result<()> {
        ec2::associate_profile(&*self.member(target).await?, target, profile_name).await
    }

    async fn replace_profile(
        &self,
        target: &Target,
        association_id: &str,
        profile_name: &str,
    ) -> Result<()> {
        ec2::replace_profile(&*self.member(target).await?, association_id, profile_name).await
    }

    async fn ssm_online(&self, target: &Target) -> Result<bool> {
        ssm::online(&*self.member(target).await?, target).await
    }

    async fn send_command(
        &self,
        target: &Target,
        document: &str,
        parameters: &BTreeMap<String, Vec<String>>,
        timeout_seconds: i32,
        comment: &str,
    ) -> Result<String> {
        let m = self.member(target).await?;
        ssm::send_command(&m, target, document, parameters, timeout_seconds, comment).await
    }

    async fn command_invocation(
        &self,
        target: &Target,
        command_id: &str,
        plugin: &str,
    ) -> Result<Invocation> {
        let m = self.member(target).await?;
        ssm::command_invocation(&m, target, command_id, plugin).await
    }

    async fn ensure_security_group(
        &self,
        target: &Target,
        vpc_id: &str,
        name: &str,
        allow_all: bool,
    ) -> Result<String> {
        let m = self.member(target).await?;
        ec2::security_group::ensure(&m, vpc_id, name, allow_all).await
    }

    async fn set_interface_groups(
        &self,
        target: &Target,
        interface_id: &str,
        groups: &[String],
    ) -> Result<()> {
        let m = self.member(target).await?;
        ec2::security_group::set_interface_groups(&m, interface_id, groups).await
    }

    async fn protect(&self, target: &Target) -> Result<()> {
        ec2::protect(&*self.member(target).await?, target).await
    }

    async fn keep_volumes(&self, target: &Target, devices: &[String]) -> Result<()> {
        ec2::keep_volumes(&*self.member(target).await?, target, devices).await
    }

    async fn case_snapshots(
        &self,
        target: &Target,
        case_id: &str,
    ) -> Result<Vec<(String, String)>> {
        ec2::snapshot::of_case(&*self.member(target).await?, case_id).await
    }

    async fn snapshot(
        &self,
        target: &Target,
        volume_id: &str,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let m = self.member(target).await?;
        ec2::snapshot::create(&m, volume_id, description, tags).await
    }

    async fn profile_roles(&self, target: &Target, profile_name: &str) -> Result<Vec<String>> {
        iam::profile_roles(&*self.member(target).await?, profile_name).await
    }

    async fn put_role_policy(
        &self,
        target: &Target,
        role_name: &str,
        policy_name: &str,
        policy_document: &str,
    ) -> Result<()> {
        let m = self.member(target).await?;
        iam::put_role_policy(&m, role_name, policy_name, policy_document).await
    }

    async fn auto_scaling_group(&self, target: &Target) -> Result<Option<String>> {
        autoscaling::auto_scaling_group(&*self.member(target).await?, target).await
    }

    async fn detach_from_auto_scaling_group(&self, target: &Target, group: &str) -> Result<()> {
        autoscaling::detach(&*self.member(target).await?, target, group).await
    }

    async fn target_registrations(&self, target: &Target) -> Result<Vec<TargetRegistration>> {
        elbv2::target_registrations(&*self.member(target).await?, target).await
    }

    async fn deregister(&self, target: &Target, registration: &TargetRegistration) -> Result<()> {
        elbv2::deregister(&*self.member(target).await?, target, registration).await
    }

    async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<Started> {
        sfn::start_execution(self, state_machine_arn, name, input).await
    }

    async fn publish(&self, topic_arn: &str, subject: &str, message: &str) -> Result<()> {
        sns::publish(self, topic_arn, subject, message).await
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        s3::get_object(self, bucket, key).await
    }

    async fn object_size(&self, bucket: &str, key: &str) -> Result<Option<u64>> {
        s3::object_size(self, bucket, key).await
    }
}
