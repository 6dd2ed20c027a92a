//! [`Cloud`] for [`AwsCloud`]: each operation sent to its service's module, on the member role's
//! clients for the instance's account and region, or on the controller's own.

use super::{
    AwsCloud, autoscaling, control_plane, ec2, elbv2, iam, kms, restore, s3, sfn, sns, ssm, sts,
};
use crate::cloud::{
    Cloud, Invocation, NewVersion, PolicyVersion, ProtectionKind, Started, SubnetRoutes,
    TargetRegistration,
};
use crate::cloud::{ControlPlaneAnswer, ControlPlaneCall};
use crate::cloud::{
    HttpsEgress, IngressRule, InstanceNetwork, Protection, RouteTable, VpcEndpoint,
};
use crate::cloud::{KmsSignature, ObjectHead, PutNew, StoredObject};
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

    async fn protect(&self, target: &Target, protection: ProtectionKind) -> Result<()> {
        ec2::protect(&*self.member(target).await?, target, protection).await
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

    async fn role_boundary(&self, target: &Target, role_name: &str) -> Result<Option<String>> {
        iam::role_boundary(&*self.member(target).await?, role_name).await
    }

    async fn put_role_boundary(
        &self,
        target: &Target,
        role_name: &str,
        policy_arn: &str,
    ) -> Result<()> {
        iam::put_role_boundary(&*self.member(target).await?, role_name, policy_arn).await
    }

    async fn policy_versions(
        &self,
        target: &Target,
        policy_arn: &str,
    ) -> Result<Vec<PolicyVersion>> {
        iam::policy_versions(&*self.member(target).await?, policy_arn).await
    }

    async fn policy_version_document(
        &self,
        target: &Target,
        policy_arn: &str,
        version_id: &str,
    ) -> Result<Option<String>> {
        let m = self.member(target).await?;
        iam::policy_version_document(&m, policy_arn, version_id).await
    }

    async fn create_policy_version(
        &self,
        target: &Target,
        policy_arn: &str,
        document: &str,
    ) -> Result<NewVersion> {
        iam::create_policy_version(&*self.member(target).await?, policy_arn, document).await
    }

    async fn delete_policy_version(
        &self,
        target: &Target,
        policy_arn: &str,
        version_id: &str,
    ) -> Result<()> {
        let m = self.member(target).await?;
        iam::delete_policy_version(&m, policy_arn, version_id).await
    }

    async fn subnet_routes(&self, target: &Target) -> Result<Option<SubnetRoutes>> {
        ec2::route_table::of_instance(&*self.member(target).await?, target).await
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

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<StoredObject>> {
        s3::get_object(self, bucket, key).await
    }

    async fn get_object_up_to(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: u64,
    ) -> Result<Option<StoredObject>> {
        s3::get_object_up_to(self, bucket, key, max_bytes).await
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>> {
        s3::head_object(self, bucket, key).await
    }

    async fn put_new_object(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        content_type: &str,
        kms_key_id: &str,
    ) -> Result<PutNew> {
        s3::put_new_object(self, bucket, key, body, content_type, kms_key_id).await
    }

    async fn list_keys(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>> {
        s3::list_keys(self, bucket, prefix, start_after).await
    }

    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<KmsSignature> {
        kms::sign(self, key_id, message).await
    }

    async fn caller_arn(&self) -> Result<String> {
        sts::caller_arn(self).await
    }

    // -------------------------------------- contain-first isolation and release
    async fn instance_network(&self, target: &Target) -> Result<InstanceNetwork> {
        ec2::endpoints::instance_network(&*self.member(target).await?, target).await
    }

    async fn vpc_endpoints(&self, target: &Target, vpc_id: &str) -> Result<Vec<VpcEndpoint>> {
        ec2::endpoints::vpc_endpoints(&*self.member(target).await?, vpc_id).await
    }

    async fn subnet_route_table(
        &self,
        target: &Target,
        vpc_id: &str,
        subnet_id: &str,
    ) -> Result<Option<RouteTable>> {
        let m = self.member(target).await?;
        ec2::endpoints::subnet_route_table(&m, vpc_id, subnet_id).await
    }

    async fn group_ingress(
        &self,
        target: &Target,
        group_ids: &[String],
    ) -> Result<Vec<IngressRule>> {
        ec2::endpoints::group_ingress(&*self.member(target).await?, group_ids).await
    }

    async fn security_group_id(
        &self,
        target: &Target,
        vpc_id: &str,
        name: &str,
    ) -> Result<Option<String>> {
        ec2::endpoints::security_group_id(&*self.member(target).await?, vpc_id, name).await
    }

    async fn ensure_https_egress_group(
        &self,
        target: &Target,
        vpc_id: &str,
        name: &str,
        egress: &[HttpsEgress],
    ) -> Result<String> {
        let m = self.member(target).await?;
        ec2::endpoints::ensure_https_egress_group(&m, vpc_id, name, egress).await
    }

    async fn protection(&self, target: &Target) -> Result<Protection> {
        restore::protection(&*self.member(target).await?, target).await
    }

    async fn set_protection(&self, target: &Target, protection: Protection) -> Result<()> {
        restore::set_protection(&*self.member(target).await?, target, protection).await
    }

    async fn disassociate_profile(&self, target: &Target, association_id: &str) -> Result<()> {
        restore::disassociate_profile(&*self.member(target).await?, association_id).await
    }

    async fn untag_instance(&self, target: &Target, keys: &[String]) -> Result<()> {
        restore::untag_instance(&*self.member(target).await?, target, keys).await
    }

    async fn attach_to_auto_scaling_group(&self, target: &Target, group: &str) -> Result<()> {
        restore::attach(&*self.member(target).await?, target, group).await
    }

    async fn register(&self, target: &Target, registration: &TargetRegistration) -> Result<()> {
        elbv2::register(&*self.member(target).await?, target, registration).await
    }

    async fn running_commands(&self, target: &Target) -> Result<Vec<(String, String)>> {
        restore::running_commands(&*self.member(target).await?, target).await
    }

    async fn control_plane(
        &self,
        target: &Target,
        call: &ControlPlaneCall,
    ) -> Result<ControlPlaneAnswer> {
        control_plane::call(&*self.member(target).await?, call).await
    }
}
