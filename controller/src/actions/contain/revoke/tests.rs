use super::*;
use crate::config::test_config;
use crate::fake::{FakeCloud, FakeVersion, facts};
use proptest::prelude::*;
use std::rc::Rc;

const NOW: &str = "2026-11-29T18:00:00Z";
const T: i64 = 1_795_975_200;
const POLICY: &str = "arn:aws:iam::111111111111:policy/AirfRevokedSessions";

fn target(n: u64) -> Target {
    facts(&format!("i-{n:017x}")).target
}

fn default_boundary(cloud: &FakeCloud) -> Boundary {
    Boundary::parse(cloud.lock().policies[POLICY].default_document().unwrap()).unwrap()
}

fn web() -> Vec<String> {
    vec!["WebServerRole".to_owned()]
}

#[test]
fn the_time_is_rounded_up_to_the_minute() {
    assert_eq!(revocation_time("2026-11-29T18:00:00Z").unwrap(), T);
    assert_eq!(
        revocation_time("2026-11-29T18:00:00.000000001Z").unwrap(),
        T + 60
    );
    assert_eq!(revocation_time("2026-11-29T17:59:01Z").unwrap(), T);
    assert!(revocation_time("now").is_err());
}

#[tokio::test]
async fn a_retry_in_the_same_minute_writes_nothing_new() {
    let cloud = FakeCloud::with(facts("i-0000000000000000a"));
    let config = test_config();
    let t = target(1);
    let first = revoke_roles(&cloud, &config, &t, &web(), "2026-11-29T17:59:10Z")
        .await
        .unwrap();
    assert_eq!(first.revoked_roles, web());
    let versions = cloud.lock().policies[POLICY].versions.len();
    let again = revoke_roles(&cloud, &config, &t, &web(), "2026-11-29T17:59:50Z")
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(cloud.lock().policies[POLICY].versions.len(), versions);
}

#[tokio::test]
async fn with_five_versions_the_oldest_covered_one_is_deleted_first() {
    let cloud = FakeCloud::with(facts("i-0000000000000000a"));
    let config = test_config();
    for n in 1..=6 {
        revoke_roles(&cloud, &config, &target(n), &web(), NOW)
            .await
            .unwrap();
    }
    let s = cloud.lock();
    let ids: Vec<&str> = s.policies[POLICY]
        .versions
        .iter()
        .map(|v| v.id.as_str())
        .collect();
    assert_eq!(ids, ["v3", "v4", "v5", "v6", "v7"]);
    drop(s);
    let b = default_boundary(&cloud);
    assert!((1..=6).all(|n| b.covers(T, &target(n).instance_arn())));
    assert_eq!(
        b.document().unwrap().matches("Deny").count(),
        1,
        "one statement for the minute"
    );
}

#[tokio::test]
async fn a_full_policy_is_reported_with_what_to_do_and_left_as_it_was() {
    let cloud = FakeCloud::with(facts("i-0000000000000000a"));
    let mut full = Boundary::default();
    let mut n = 0;
    while full.document().is_ok() {
        n += 1;
        full.add(T - 60 * n, &target(1000 + n as u64).instance_arn());
    }
    full = Boundary::default();
    for m in 1..n {
        full.add(T - 60 * m, &target(1000 + m as u64).instance_arn());
    }
    let document = full.document().unwrap();
    {
        let mut s = cloud.lock();
        let p = s.policies.get_mut(POLICY).unwrap();
        p.versions[0].document = document.clone();
    }
    let done = revoke_roles(&cloud, &test_config(), &target(1), &web(), NOW)
        .await
        .unwrap();
    assert!(done.revoked_roles.is_empty());
    assert!(
        matches!(done.not_revoked.as_slice(), [gap] if gap.contains("is full")
            && gap.contains("Revoke active sessions") && gap.contains("WebServerRole")),
        "{:?}",
        done.not_revoked
    );
    let s = cloud.lock();
    assert_eq!(s.policies[POLICY].versions.len(), 1);
    assert!(
        !s.boundaries.contains_key("WebServerRole"),
        "no boundary set when it would revoke nothing"
    );
}

#[tokio::test]
async fn an_unreadable_default_version_is_never_overwritten() {
    let cloud = FakeCloud::with(facts("i-0000000000000000a"));
    cloud.lock().policies.get_mut(POLICY).unwrap().versions[0].document = "{oops".into();
    let done = revoke_roles(&cloud, &test_config(), &target(1), &web(), NOW)
        .await
        .unwrap();
    assert!(done.not_revoked[0].contains("not JSON"), "{done:?}");
    assert_eq!(cloud.lock().policies[POLICY].versions.len(), 1);
}

#[tokio::test]
async fn a_missing_policy_is_reported_not_fatal() {
    let cloud = FakeCloud::with(facts("i-0000000000000000a"));
    cloud.lock().policies.clear();
    let done = revoke_roles(&cloud, &test_config(), &target(1), &web(), NOW)
        .await
        .unwrap();
    assert!(
        done.not_revoked
            .iter()
            .all(|g| g.contains("cannot be read") && g.contains("NoSuchEntity")),
        "{done:?}"
    );
}

#[tokio::test]
async fn throttling_is_retried_by_the_workflow_not_reported() {
    let cloud = FakeCloud::with(facts("i-0000000000000000a"));
    cloud.lock().fail_on = Some(("CreatePolicyVersion".into(), true));
    let err = revoke_roles(&cloud, &test_config(), &target(1), &web(), NOW).await;
    assert!(matches!(err, Err(e) if e.kind() == Kind::Transient));
}

/// A stale write (a version made from a default read before another containment's version)
/// must not drop that containment's revocation, even though that containment has already seen
/// its revocation in the default version and finished.
#[tokio::test]
async fn a_stale_write_does_not_drop_a_finished_containment() {
    let cloud = FakeCloud::with(facts("i-0000000000000000a"));
    let mut stale = Boundary::parse(crate::fake::BOUNDARY_V1).unwrap();
    revoke_roles(&cloud, &test_config(), &target(1), &web(), NOW)
        .await
        .unwrap();
    // Another writer read v1, then wrote after containment 1 finished:
    stale.add(T, &target(2).instance_arn());
    {
        let mut s = cloud.lock();
        let clock = s.clock;
        let p = s.policies.get_mut(POLICY).unwrap();
        for v in &mut p.versions {
            v.is_default = false;
        }
        p.versions.push(FakeVersion {
            id: "v3".into(),
            document: stale.document().unwrap(),
            is_default: true,
            created: clock,
        });
        p.next = 4;
    }
    assert!(!default_boundary(&cloud).covers(T, &target(1).instance_arn()));
    // ...and its own check (or the next containment) repairs it.
    revoke_roles(&cloud, &test_config(), &target(2), &web(), NOW)
        .await
        .unwrap();
    let b = default_boundary(&cloud);
    assert!(b.covers(T, &target(1).instance_arn()) && b.covers(T, &target(2).instance_arn()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any number of concurrent containments in one account, interleaved at every IAM call in
    /// any order: each ends with its revocation in the default version, the policy never has
    /// more than five versions, and no revocation written is lost.
    #[test]
    fn concurrent_containments_all_end_up_in_the_default_version(
        writers in 2usize..7,
        yields in prop::collection::vec(0u8..4, 0..400),
        spread in prop::collection::vec(0i64..3, 7),
    ) {
        let cloud = Rc::new(FakeCloud::with(facts("i-0000000000000000a")));
        cloud.lock().iam_yields = yields.into();
        let config = test_config();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let local = tokio::task::LocalSet::new();
        let mut handles = Vec::new();
        for (n, offset) in spread.iter().take(writers).enumerate() {
            let (cloud, config) = (cloud.clone(), config.clone());
            let now = boundary::rfc3339(T + 30 * offset);
            handles.push(local.spawn_local(async move {
                revoke_roles(&*cloud, &config, &target(n as u64 + 1), &web(), &now).await
            }));
        }
        let results = rt.block_on(local.run_until(async {
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.unwrap());
            }
            out
        }));
        for (n, r) in results.iter().enumerate() {
            let r = r.as_ref().unwrap();
            prop_assert_eq!(&r.revoked_roles, &web(), "writer {}: {:?}", n, r);
        }
        let b = default_boundary(&cloud);
        for (n, offset) in spread.iter().take(writers).enumerate() {
            let before = revocation_time(&boundary::rfc3339(T + 30 * offset)).unwrap();
            prop_assert!(b.covers(before, &target(n as u64 + 1).instance_arn()), "writer {} lost: {:?}", n, b);
        }
        prop_assert!(cloud.lock().policies[POLICY].versions.len() <= MAX_VERSIONS);
    }
}
