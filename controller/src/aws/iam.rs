//! IAM, in the member account: the roles behind an instance profile, their permissions
//! boundaries, and the versions of the revocation boundary `contain` maintains
//! (`actions/contain/revoke.rs`).

use super::sts::Member;
use super::{aws_err, code_of};
use crate::cloud::{NewVersion, PolicyVersion};
use crate::error::{Error, Result};

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

/// GetRole: the ARN of its permissions boundary.
pub(super) async fn role_boundary(m: &Member, role_name: &str) -> Result<Option<String>> {
    let out = m
        .iam
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .map_err(aws_err("iam:GetRole"))?;
    Ok(out
        .role()
        .and_then(|r| r.permissions_boundary())
        .and_then(|b| b.permissions_boundary_arn())
        .map(str::to_owned))
}

/// PutRolePermissionsBoundary.
pub(super) async fn put_role_boundary(m: &Member, role_name: &str, policy_arn: &str) -> Result<()> {
    m.iam
        .put_role_permissions_boundary()
        .role_name(role_name)
        .permissions_boundary(policy_arn)
        .send()
        .await
        .map_err(aws_err("iam:PutRolePermissionsBoundary"))?;
    Ok(())
}

/// ListPolicyVersions (a policy has at most five: one page).
pub(super) async fn policy_versions(m: &Member, policy_arn: &str) -> Result<Vec<PolicyVersion>> {
    let out = m
        .iam
        .list_policy_versions()
        .policy_arn(policy_arn)
        .send()
        .await
        .map_err(aws_err("iam:ListPolicyVersions"))?;
    Ok(out
        .versions()
        .iter()
        .filter_map(|v| {
            Some(PolicyVersion {
                id: v.version_id()?.to_owned(),
                is_default: v.is_default_version(),
                created: v.create_date().map_or(0, |d| d.secs()),
            })
        })
        .collect())
}

/// GetPolicyVersion: the document, which IAM returns URL-encoded (RFC 3986).
pub(super) async fn policy_version_document(
    m: &Member,
    policy_arn: &str,
    version_id: &str,
) -> Result<Option<String>> {
    match m
        .iam
        .get_policy_version()
        .policy_arn(policy_arn)
        .version_id(version_id)
        .send()
        .await
    {
        Ok(out) => {
            let Some(encoded) = out.policy_version().and_then(|v| v.document()) else {
                return Err(Error::failed(format!(
                    "iam:GetPolicyVersion {policy_arn} {version_id} returned no document"
                )));
            };
            percent_decode(encoded)
                .map(Some)
                .map_err(|e| Error::failed(format!("{policy_arn} {version_id}: the document {e}")))
        }
        Err(e) if code_of(&e) == "NoSuchEntity" => Ok(None),
        Err(e) => Err(aws_err("iam:GetPolicyVersion")(e)),
    }
}

/// CreatePolicyVersion as the default version.
pub(super) async fn create_policy_version(
    m: &Member,
    policy_arn: &str,
    document: &str,
) -> Result<NewVersion> {
    match m
        .iam
        .create_policy_version()
        .policy_arn(policy_arn)
        .policy_document(document)
        .set_as_default(true)
        .send()
        .await
    {
        Ok(out) => Ok(NewVersion::Created(
            out.policy_version()
                .and_then(|v| v.version_id())
                .unwrap_or_default()
                .to_owned(),
        )),
        Err(e) if code_of(&e) == "LimitExceeded" => Ok(NewVersion::LimitExceeded(
            aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
        )),
        Err(e) => Err(aws_err("iam:CreatePolicyVersion")(e)),
    }
}

/// DeletePolicyVersion; a version another containment deleted first is fine.
pub(super) async fn delete_policy_version(
    m: &Member,
    policy_arn: &str,
    version_id: &str,
) -> Result<()> {
    match m
        .iam
        .delete_policy_version()
        .policy_arn(policy_arn)
        .version_id(version_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if code_of(&e) == "NoSuchEntity" => Ok(()),
        Err(e) => Err(aws_err("iam:DeletePolicyVersion")(e)),
    }
}

/// Decodes `%XX` escapes (IAM's policy documents); any other byte is itself. An escape that
/// is not two hex digits, or bytes that are not UTF-8, are refused rather than guessed.
pub fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("has a bad escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|e| format!("is not UTF-8 once decoded ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iam_documents_decode() {
        assert_eq!(
            percent_decode("%7B%22Version%22%3A%222012-10-17%22%7D").unwrap(),
            r#"{"Version":"2012-10-17"}"#
        );
        assert_eq!(percent_decode("a+b").unwrap(), "a+b", "not form encoding");
        assert!(percent_decode("%7").is_err());
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%C3").is_err(), "half a UTF-8 character");
    }

    proptest! {
        /// Whatever IAM (or an emulator) sends: no panic, and encoding then decoding any text
        /// gives it back.
        #[test]
        fn decoding_never_panics_and_inverts_encoding(text in "\\PC{0,64}", raw in ".{0,64}") {
            let _ = percent_decode(&raw);
            let encoded: String = text
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            prop_assert_eq!(percent_decode(&encoded), Ok(text));
        }
    }
}
