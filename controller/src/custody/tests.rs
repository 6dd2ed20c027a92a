use super::*;
use crate::fake::FakeCloud;

const BUCKET: &str = "forensics-evidence";
const PREFIX: &str = "evidence/IR-1/custody/";
const KEY: &str = "arn:aws:kms:us-east-1:222222222222:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const EXECUTION: &str = "arn:aws:states:us-east-1:222222222222:execution:airf-investigation:x";

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

fn draft(action: CustodyAction, n: usize) -> Draft {
    Draft {
        action,
        actor: "arn:aws:sts::222222222222:assumed-role/airf-controller/airf-controller".into(),
        at: "2026-12-02T06:00:00Z".into(),
        execution_arn: Some(EXECUTION.into()),
        objects: vec![format!(
            "s3://{BUCKET}/evidence/IR-1/i-1/r/{n}.manifest.json"
        )],
        detail: String::new(),
    }
}

/// The stored entries, in key order, parsed, with their bytes.
fn entries(cloud: &FakeCloud) -> Vec<(CustodyEntry, Vec<u8>)> {
    cloud
        .lock()
        .objects
        .iter()
        .filter(|((b, k), _)| b == BUCKET && k.starts_with(PREFIX))
        .map(|(_, bytes)| (serde_json::from_slice(bytes).unwrap(), bytes.clone()))
        .collect()
}

fn assert_chained(chain: &[(CustodyEntry, Vec<u8>)]) {
    for (i, (entry, _)) in chain.iter().enumerate() {
        assert_eq!(entry.seq, i as u64 + 1, "{chain:?}");
        let expected = match i.checked_sub(1).and_then(|j| chain.get(j)) {
            Some((_, prev)) => sha256_hex(prev),
            None => String::new(),
        };
        assert_eq!(entry.prev_sha256, expected, "entry {}", entry.seq);
    }
}

#[test]
fn entries_chain_each_to_the_hash_of_the_previous_ones_bytes() {
    let cloud = FakeCloud::default();
    run(async {
        let mut log = CustodyLog::new(&cloud, BUCKET, PREFIX, "IR-1", "kms-key");
        for (n, action) in [
            CustodyAction::Acquired,
            CustodyAction::Read,
            CustodyAction::Verified,
            CustodyAction::Signed,
        ]
        .into_iter()
        .enumerate()
        {
            let key = log.append(draft(action, n)).await.unwrap();
            assert_eq!(key, format!("{PREFIX}{}", custody_entry_name(n as u64 + 1)));
        }
        // A second writer (the next step, another instance) continues the same chain.
        let mut other = CustodyLog::new(&cloud, BUCKET, PREFIX, "IR-1", "kms-key");
        other.append(draft(CustodyAction::Read, 9)).await.unwrap();
    });
    let chain = entries(&cloud);
    assert_eq!(chain.len(), 5);
    assert_chained(&chain);
    assert!(
        chain
            .iter()
            .all(|(e, _)| e.case == "IR-1" && e.execution_arn.as_deref() == Some(EXECUTION))
    );
    // Every write was conditional and named the evidence key.
    let puts: Vec<String> = cloud
        .lock()
        .calls
        .iter()
        .filter(|c| c.starts_with("PutObject"))
        .cloned()
        .collect();
    assert_eq!(puts.len(), 5);
    assert!(
        puts.iter()
            .all(|c| c.contains("if-none-match=*") && c.ends_with("sse-kms=kms-key")),
        "{puts:?}"
    );
}

/// Another writer takes the number this one wanted (412): it reads the new tail and appends
/// after it, so the chain stays whole and nothing is overwritten.
#[test]
fn a_lost_race_for_a_number_retries_with_the_next_one() {
    let cloud = FakeCloud::default();
    run(async {
        let mut log = CustodyLog::new(&cloud, BUCKET, PREFIX, "IR-1", "");
        log.append(draft(CustodyAction::Acquired, 0)).await.unwrap();
        // The other writer's entry 2 chains to entry 1, as it would.
        let first = entries(&cloud)[0].1.clone();
        let theirs = CustodyEntry {
            seq: 2,
            prev_sha256: sha256_hex(&first),
            ..serde_json::from_slice(&first).unwrap()
        };
        let theirs = serde_json::to_vec(&theirs).unwrap();
        cloud
            .lock()
            .racing_puts
            .push_back((format!("{PREFIX}{}", custody_entry_name(2)), theirs.clone()));
        let key = log.append(draft(CustodyAction::Read, 1)).await.unwrap();
        assert_eq!(key, format!("{PREFIX}{}", custody_entry_name(3)));
        let chain = entries(&cloud);
        assert_eq!(chain[1].1, theirs, "the other writer's entry was replaced");
        assert_chained(&chain);
        // The retry listed only what came after the entry it knew.
        let lists: Vec<String> = cloud
            .lock()
            .calls
            .iter()
            .filter(|c| c.starts_with("ListObjectsV2"))
            .cloned()
            .collect();
        assert_eq!(
            lists.last().unwrap(),
            &format!(
                "ListObjectsV2 s3://{BUCKET}/{PREFIX} after {PREFIX}{}",
                custody_entry_name(1)
            )
        );
    });
}

#[test]
fn a_log_that_always_loses_fails_as_transient_after_a_bounded_number_of_attempts() {
    let cloud = FakeCloud::default();
    for seq in 1..=u64::from(MAX_APPEND_ATTEMPTS) {
        cloud.lock().racing_puts.push_back((
            format!("{PREFIX}{}", custody_entry_name(seq)),
            b"{}".to_vec(),
        ));
    }
    let err = run(async {
        CustodyLog::new(&cloud, BUCKET, PREFIX, "IR-1", "")
            .without_pauses()
            .append(draft(CustodyAction::Read, 0))
            .await
            .unwrap_err()
    });
    assert_eq!(err.kind(), crate::error::Kind::Transient, "{err}");
}

fn a_statement(manifest_sha: &str) -> Statement {
    statement(Facts {
        case: "IR-1",
        host: "i-1",
        manifest: SignedObject {
            bucket: BUCKET.into(),
            key: "evidence/IR-1/i-1/r/sda.manifest.json".into(),
            sha256: manifest_sha.into(),
            size: 100,
            version_id: Some("v1".into()),
        },
        image: SignedObject {
            bucket: BUCKET.into(),
            key: "evidence/IR-1/i-1/r/sda.raw.zst".into(),
            sha256: "bb".repeat(32),
            size: 200,
            version_id: None,
        },
        raw_sha256: &"cc".repeat(32),
        verified_at: "2026-12-02T06:00:00Z",
        execution_arn: EXECUTION,
        key_id: KEY,
    })
}

#[test]
fn a_countersignature_is_stored_once_beside_its_manifest() {
    let cloud = FakeCloud::default();
    let s = a_statement(&"aa".repeat(32));
    let done = run(countersign(&cloud, &s, "kms-key")).unwrap();
    let key = "evidence/IR-1/i-1/r/sda.manifest.sig.json";
    assert_eq!(done.signature, format!("s3://{BUCKET}/{key}"));
    assert!(!done.existing);
    let stored: Countersignature = serde_json::from_slice(
        cloud
            .lock()
            .objects
            .get(&(BUCKET.into(), key.into()))
            .unwrap(),
    )
    .unwrap();
    // The signed bytes are the stored statement's, and they name the manifest and execution.
    let (signed_key, message) = cloud.lock().signed[0].clone();
    assert_eq!(signed_key, KEY);
    assert_eq!(message, stored.statement.as_bytes());
    let back: Statement = serde_json::from_str(&stored.statement).unwrap();
    assert_eq!(back, s);
    assert_eq!(stored.algorithm, "ECDSA_SHA_256");

    // A retried step finds its own signature and keeps it.
    let again = run(countersign(&cloud, &s, "kms-key")).unwrap();
    assert!(again.existing);
    // A different manifest at the same key is refused, and the stored signature stays.
    let before = cloud
        .lock()
        .objects
        .get(&(BUCKET.into(), key.into()))
        .cloned();
    let err = run(countersign(
        &cloud,
        &a_statement(&"dd".repeat(32)),
        "kms-key",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("never replaced"), "{err}");
    assert_eq!(
        cloud
            .lock()
            .objects
            .get(&(BUCKET.into(), key.into()))
            .cloned(),
        before
    );
}

#[test]
fn a_statement_kms_cannot_sign_whole_is_refused_before_signing() {
    let cloud = FakeCloud::default();
    let mut s = a_statement(&"aa".repeat(32));
    s.manifest.key = format!("evidence/IR-1/i-1/{}/sda.manifest.json", "r".repeat(4000));
    let err = run(countersign(&cloud, &s, "")).unwrap_err();
    assert!(err.to_string().contains("KMS signs at most 4096"), "{err}");
    assert!(cloud.lock().signed.is_empty());
}

#[test]
fn signature_and_custody_keys() {
    assert_eq!(
        signature_key("evidence/IR-1/i-1/r/mem.manifest.json"),
        "evidence/IR-1/i-1/r/mem.manifest.sig.json"
    );
    assert_eq!(custody_prefix("evidence", "IR-1"), "evidence/IR-1/custody/");
    assert_eq!(custody_prefix("", "IR-1"), "IR-1/custody/");
}
