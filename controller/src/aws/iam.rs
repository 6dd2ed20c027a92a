//! IAM, in the member account: the roles behind an instance profile, and the inline policy
//! `contain` builds to revoke the instance's earlier sessions.

use super::sts::Member;
use super::{aws_err, code_of};
use crate::error::Result;

/// GetInstanceProfile: its role names; none when the profile no longer exists.
pub(super) async fn profile_roles(m: &Member, profile_name: &str) -> Result<Vec<String>> {
    match m
        .iam
        .get_instance_profile()
        .instance_profile_name(profile_name)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .instance_profile()
            .map(|p| p.roles().iter().map(|r| r.role_name().to_owned()).collect())
            .unwrap_or_default()),
        Err(e) if code_of(&e) == "NoSuchEntity" => Ok(Vec::new()),
        Err(e) => Err(aws_err("iam:GetInstanceProfile")(e)),
    }
}

/// PutRolePolicy, the document as given.
pub(super) async fn put_role_policy(
    m: &Member,
    role_name: &str,
    policy_name: &str,
    policy_document: &str,
) -> Result<()> {
    m.iam
        .put_role_policy()
        .role_name(role_name)
        .policy_name(policy_name)
        .policy_document(policy_document)
        .send()
        .await
        .map_err(aws_err("iam:PutRolePolicy"))?;
    Ok(())
}
