//! EBS snapshots of the instance's volumes, tagged with the case, and finding those a retried
//! containment already took.

use super::super::aws_err;
use super::super::sts::Member;
use super::{filter, tag_spec};
use crate::error::{Error, Result};
use crate::model::CASE_TAG;
use aws_sdk_ec2::types as ec2t;
use std::collections::BTreeMap;

/// DescribeSnapshots (every page): this account's snapshots tagged with the case, as
/// (volume id, snapshot id).
pub(in crate::aws) async fn of_case(m: &Member, case_id: &str) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = m
            .ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(filter(&format!("tag:{CASE_TAG}"), case_id))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(aws_err("ec2:DescribeSnapshots"))?;
        found.extend(
            page.snapshots()
                .iter()
                .filter_map(|s| Some((s.volume_id()?.to_owned(), s.snapshot_id()?.to_owned()))),
        );
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(found)
}

/// CreateSnapshot, tagged at creation; returns the snapshot id.
pub(in crate::aws) async fn create(
    m: &Member,
    volume_id: &str,
    description: &str,
    tags: &BTreeMap<String, String>,
) -> Result<String> {
    let out = m
        .ec2
        .create_snapshot()
        .volume_id(volume_id)
        .description(description)
        .tag_specifications(tag_spec(ec2t::ResourceType::Snapshot, tags))
        .send()
        .await
        .map_err(aws_err("ec2:CreateSnapshot"))?;
    out.snapshot_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::failed("ec2:CreateSnapshot returned no id"))
}
