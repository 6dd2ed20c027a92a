use super::*;
use crate::config::test_config;
use crate::fake::{FakeCloud, subject};
use airf_isf::testing::toy_kernel;
use serde_json::json;

const CASE: &str = "IR-7";
const INSTANCE: &str = "i-0123456789abcdef0";
const EXECUTION: &str =
    "arn:aws:states:us-east-1:111111111111:execution:airf-investigation/Instance:0f3c2b1a";

/// Where the capture is stored.
fn folder(config: &Config) -> String {
    format!(
        "{}/{CASE}/{INSTANCE}/20261202T060000Z-r1",
        config.evidence_prefix
    )
}

fn key(config: &Config, name: &str) -> String {
    format!("{}/{name}", folder(config))
}

fn uri(config: &Config, name: &str) -> String {
    s3_uri(&config.evidence_bucket, &key(config, name))
}

/// A memory capture as the agent stores it: the image, the four inputs (those `stored` names)
/// and the manifest that lists them with `symbol_inputs`; returns what `verify` says of it.
fn capture(
    cloud: &FakeCloud,
    config: &Config,
    inputs: &InputBytes,
    stored: &[&str],
    symbol_inputs: serde_json::Value,
) -> Verified {
    let bucket = &config.evidence_bucket;
    let image = vec![0x4c_u8; 64];
    let files = [
        (names::BTF, &inputs.btf, "/sys/kernel/btf/vmlinux"),
        (names::KALLSYMS, &inputs.kallsyms, "/proc/kallsyms"),
        (
            names::VMCOREINFO,
            &inputs.vmcoreinfo,
            "/proc/kcore VMCOREINFO note",
        ),
        (names::BANNER, &inputs.banner, "/proc/version"),
    ];
    let mut artifacts = Vec::new();
    let mut missing = Vec::new();
    let mut s = cloud.lock();
    for (name, bytes, origin) in files {
        if stored.contains(&name) {
            s.objects
                .insert((bucket.clone(), key(config, name)), bytes.clone());
            artifacts.push(json!({"name": name, "origin": origin, "size": bytes.len(),
                "sha256": sha256_hex(bytes), "location": uri(config, name)}));
        } else {
            missing.push(json!({"name": name, "origin": origin, "cause": "No such file or directory (os error 2)"}));
        }
    }
    let manifest = json!({
        "schema_version": 1,
        "tool": {"name": "airf-agent", "version": "0.1.0"},
        "case": CASE, "kind": "memory", "status": "complete",
        "host": {"hostname": INSTANCE, "kernel_release": "6.1.0-test"},
        "source": {
            "type": "memory", "source_used": "kcore", "format": "lime",
            "ram_ranges": [{"start": 4096, "end": 8191}], "ram_bytes": 4096,
            "banner": "Linux version 6.1.0-test", "kernel_release": "6.1.0-test",
            "artifacts": artifacts, "artifacts_missing": missing,
            "unreadable_offsets": "physical", "symbol_inputs": symbol_inputs
        },
        "started_at": "2026-12-02T06:00:00Z", "finished_at": "2026-12-02T06:01:00Z",
        "raw": {"size": 4096 + 32, "sha256": "2".repeat(64)},
        "compressed": {"format": "zstd-seekable", "size": image.len(), "sha256": sha256_hex(&image),
            "level": 3, "frame_size": 4096, "frames": 1},
        "image": {"location": uri(config, "memory.lime.zst"), "bucket": bucket,
            "key": key(config, "memory.lime.zst")},
        "unreadable": {"ranges": [], "total_bytes": 0, "omitted": 0},
        "agent": {"peak_rss_bytes": 1, "threads": 1}
    });
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let parsed = super::super::verify::parse_manifest(&bytes).unwrap();
    assert!(matches!(parsed.source, SourceFacts::Memory(_)));
    s.objects
        .insert((bucket.clone(), key(config, "memory.manifest.json")), bytes);
    s.objects.insert(
        (bucket.clone(), key(config, "memory.lime.zst")),
        image.clone(),
    );
    Verified {
        kind: EvidenceKind::Memory,
        source: "/proc/kcore".into(),
        manifest: uri(config, "memory.manifest.json"),
        image: uri(config, "memory.lime.zst"),
        raw_size: 4096 + 32,
        raw_sha256: "2".repeat(64),
        compressed_sha256: sha256_hex(&image),
        unreadable_bytes: 0,
    }
}

const ALL: [&str; 4] = [
    names::BTF,
    names::KALLSYMS,
    names::VMCOREINFO,
    names::BANNER,
];

fn complete() -> serde_json::Value {
    json!({"complete": true, "kptr_restrict": 0, "kallsyms_zeroed": false})
}

/// A disk artifact, as `verify` lists it beside the memory image.
fn disk(config: &Config) -> Verified {
    Verified {
        kind: EvidenceKind::Disk,
        source: "/dev/nvme0n1".into(),
        manifest: uri(config, "nvme0n1.manifest.json"),
        image: uri(config, "nvme0n1.raw.zst"),
        raw_size: 1,
        raw_sha256: "3".repeat(64),
        compressed_sha256: "4".repeat(64),
        unreadable_bytes: 0,
    }
}

fn run(cloud: &FakeCloud, artifacts: &[Verified]) -> Result<SymbolsOutcome> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(symbols(
            cloud,
            &test_config(),
            CASE,
            &subject(INSTANCE),
            artifacts,
            EXECUTION,
        ))
}

fn puts(cloud: &FakeCloud) -> Vec<String> {
    cloud
        .lock()
        .calls
        .iter()
        .filter(|c| c.starts_with("PutObject"))
        .cloned()
        .collect()
}

/// Complete inputs: the table and its manifest are stored beside the image, new objects only,
/// each with its content type; the manifest ties the table to the memory manifest's bytes and
/// to the inputs' hashes it lists; the responders are told where the table is.
#[test]
fn a_capture_with_complete_inputs_gets_its_table_beside_the_image() {
    let config = test_config();
    let cloud = FakeCloud::default();
    let memory = capture(&cloud, &config, &toy_kernel(), &ALL, complete());
    let out = run(&cloud, &[memory.clone(), disk(&config)]).unwrap();
    assert_eq!(
        out.images,
        [ImageSymbols::Stored {
            table: uri(&config, names::TABLE),
            kernel_release: airf_isf::testing::RELEASE.into(),
            existing: false,
        }]
    );
    let bucket = &config.evidence_bucket;
    assert_eq!(
        puts(&cloud),
        [
            format!(
                "PutObject s3://{bucket}/{} if-none-match=* type=application/x-xz sse-kms={}",
                key(&config, names::TABLE),
                config.kms_key_id
            ),
            format!(
                "PutObject s3://{bucket}/{} if-none-match=* type=application/json sse-kms={}",
                key(&config, names::TABLE_MANIFEST),
                config.kms_key_id
            ),
        ]
    );
    let s = cloud.lock();
    let object = |name: &str| s.objects[&(bucket.clone(), key(&config, name))].clone();
    let table_manifest: SymbolTableManifest =
        serde_json::from_slice(&object(names::TABLE_MANIFEST)).unwrap();
    let memory_manifest = object("memory.manifest.json");
    let parsed = super::super::verify::parse_manifest(&memory_manifest).unwrap();
    let SourceFacts::Memory(facts) = &parsed.source else {
        panic!("not memory")
    };
    let listed: Vec<TableInput> = ALL
        .iter()
        .map(|n| table_input(facts.artifacts.iter().find(|a| a.name == *n).unwrap()))
        .collect();
    assert_eq!(table_manifest.inputs, listed);
    assert_eq!(
        table_manifest.memory_manifest,
        Some(TableInput {
            name: "memory.manifest.json".into(),
            size: memory_manifest.len() as u64,
            sha256: sha256_hex(&memory_manifest),
        })
    );
    let table = object(names::TABLE);
    assert_eq!(table_manifest.sha256, sha256_hex(&table));
    assert!(table_manifest.made_by.contains(EXECUTION));
    let isf = airf_isf::decompress(&table).unwrap();
    assert!(isf.symbols.contains_key("init_task"));
    // The stored manifest is what airf-isf writes for it.
    assert_eq!(
        object(names::TABLE_MANIFEST),
        airf_isf::table::manifest_bytes(&table_manifest)
    );
    let (_, subject_line, message) = s.published.first().unwrap();
    assert!(
        subject_line.contains("symbol table stored"),
        "{subject_line}"
    );
    assert!(
        message.contains(&format!("symbol table: {}", uri(&config, names::TABLE)))
            && message.contains(&format!("airf-agent fetch {}", memory.manifest)),
        "{message}"
    );
}

/// A retried step finds the table and its manifest and keeps them: nothing is written again.
/// A step that stopped between the two writes stores the manifest next time.
#[test]
fn a_table_stored_already_is_kept() {
    let config = test_config();
    let cloud = FakeCloud::default();
    let memory = capture(&cloud, &config, &toy_kernel(), &ALL, complete());
    run(&cloud, std::slice::from_ref(&memory)).unwrap();
    let before = cloud.lock().objects.clone();
    let again = run(&cloud, std::slice::from_ref(&memory)).unwrap();
    assert!(
        matches!(again.images[0], ImageSymbols::Stored { existing: true, .. }),
        "{again:?}"
    );
    assert_eq!(puts(&cloud).len(), 2, "{:?}", cloud.lock().calls);
    assert_eq!(cloud.lock().objects, before);

    cloud.lock().objects.remove(&(
        config.evidence_bucket.clone(),
        key(&config, names::TABLE_MANIFEST),
    ));
    let third = run(&cloud, std::slice::from_ref(&memory)).unwrap();
    assert!(
        matches!(
            third.images[0],
            ImageSymbols::Stored {
                existing: false,
                ..
            }
        ),
        "{third:?}"
    );
    assert!(cloud.lock().objects.contains_key(&(
        config.evidence_bucket.clone(),
        key(&config, names::TABLE_MANIFEST)
    )));
}

/// A kernel without BTF is no error of the case: no table, the capture's own reason in the
/// outcome and the notification, nothing written.
#[test]
fn a_capture_without_btf_has_no_table_and_says_why() {
    let config = test_config();
    let cloud = FakeCloud::default();
    let why = "this kernel has no BTF (/sys/kernel/btf/vmlinux: No such file or directory (os error 2)): no symbol table can be built from this capture; build one from the kernel's debug package with dwarf2json";
    let memory = capture(
        &cloud,
        &config,
        &toy_kernel(),
        &[names::KALLSYMS, names::VMCOREINFO, names::BANNER],
        json!({"complete": false, "problems": [why], "kallsyms_zeroed": false}),
    );
    let out = run(&cloud, std::slice::from_ref(&memory)).unwrap();
    assert_eq!(
        out.images,
        [ImageSymbols::NoTable {
            manifest: memory.manifest,
            no_symbol_table: why.into()
        }]
    );
    assert!(puts(&cloud).is_empty());
    let s = cloud.lock();
    let (_, subject_line, message) = s.published.first().unwrap();
    assert!(subject_line.contains("NO symbol table"), "{subject_line}");
    assert!(
        message.contains(&format!("no symbol table: {why}")),
        "{message}"
    );
}

/// Older captures (no `symbol_inputs`), and inputs a table cannot be made of although the
/// capture stored them (every kallsyms address 0): no table, with the reason.
#[test]
fn captures_that_cannot_make_a_table_say_why() {
    let config = test_config();
    let cloud = FakeCloud::default();
    let memory = capture(&cloud, &config, &toy_kernel(), &ALL, json!(null));
    let out = run(&cloud, &[memory]).unwrap();
    assert!(
        matches!(&out.images[0], ImageSymbols::NoTable { no_symbol_table, .. } if no_symbol_table.contains("older than symbol tables")),
        "{out:?}"
    );

    let cloud = FakeCloud::default();
    let mut zeroed = toy_kernel();
    let text = String::from_utf8(zeroed.kallsyms).unwrap();
    zeroed.kallsyms = text
        .lines()
        .map(|l| format!("0000000000000000{}\n", &l[16..]))
        .collect::<String>()
        .into_bytes();
    let memory = capture(&cloud, &config, &zeroed, &ALL, complete());
    let out = run(&cloud, &[memory]).unwrap();
    assert!(
        matches!(&out.images[0], ImageSymbols::NoTable { no_symbol_table, .. } if no_symbol_table.contains("kptr_restrict")),
        "{out:?}"
    );
    assert!(puts(&cloud).is_empty());
}

/// An input changed or removed after verification, or a manifest that is not the one verify
/// checked: the step fails naming the object, writes nothing, and tells the responders.
#[test]
fn altered_evidence_fails_naming_the_object() {
    let config = test_config();
    let bucket = config.evidence_bucket.clone();
    for (what, change) in [
        ("changed", names::KALLSYMS),
        ("removed", names::BTF),
        ("manifest", "memory.manifest.json"),
    ] {
        let cloud = FakeCloud::default();
        let mut memory = capture(&cloud, &config, &toy_kernel(), &ALL, complete());
        let slot = (bucket.clone(), key(&config, change));
        match what {
            "changed" => cloud.lock().objects.get_mut(&slot).unwrap()[0] ^= 1,
            "removed" => drop(cloud.lock().objects.remove(&slot)),
            _ => memory.raw_sha256 = "5".repeat(64),
        }
        let err = run(&cloud, &[memory]).unwrap_err();
        let message = err.to_string();
        assert_eq!(err.kind(), Kind::Failed, "{what}: {message}");
        assert!(
            message.starts_with("evidence altered: ") && message.contains(&uri(&config, change)),
            "{what}: {message}"
        );
        assert!(puts(&cloud).is_empty(), "{what}");
        let s = cloud.lock();
        assert!(
            s.published
                .iter()
                .any(|(_, subject, m)| subject.contains("symbol table NOT built")
                    && m.contains("evidence altered")),
            "{what}: {:?}",
            s.published
        );
    }
}

/// S3's answers: 503 SlowDown on a read or a write is Airf.Transient (the workflow retries,
/// nobody is told yet), 409 on a conditional write too; 403 AccessDenied fails the step.
#[test]
fn s3_errors_are_transient_or_final_as_s3_means_them() {
    let config = test_config();
    for (fail_on, retryable, kind) in [
        (
            format!("GetObject s3://{}/", config.evidence_bucket),
            true,
            Kind::Transient,
        ),
        ("PutObject".to_owned(), true, Kind::Transient),
        ("PutObject".to_owned(), false, Kind::Failed),
    ] {
        let cloud = FakeCloud::default();
        let memory = capture(&cloud, &config, &toy_kernel(), &ALL, complete());
        cloud.lock().fail_on = Some((fail_on.clone(), retryable));
        let err = run(&cloud, &[memory]).unwrap_err();
        assert_eq!(err.kind(), kind, "{fail_on}: {err}");
        let told = !cloud.lock().published.is_empty();
        assert_eq!(told, kind == Kind::Failed, "{fail_on}: {err}");
    }

    let cloud = FakeCloud::default();
    let memory = capture(&cloud, &config, &toy_kernel(), &ALL, complete());
    // Another writer's object lands on the key first, with other bytes.
    cloud
        .lock()
        .racing_puts
        .push_back((key(&config, names::TABLE), b"not this table".to_vec()));
    let err = run(&cloud, &[memory]).unwrap_err();
    assert!(err.to_string().contains("never replaced"), "{err}");
}

/// A table manifest of other inputs already in the folder is never replaced: the step fails
/// naming it.
#[test]
fn a_table_of_other_inputs_is_never_replaced() {
    let config = test_config();
    let cloud = FakeCloud::default();
    let memory = capture(&cloud, &config, &toy_kernel(), &ALL, complete());
    let mut other = toy_kernel();
    other.banner = b"Linux version 6.1.0-test (someone else) #2\n".to_vec();
    let built = airf_isf::table::build(&other, None, "test").unwrap();
    cloud.lock().objects.insert(
        (
            config.evidence_bucket.clone(),
            key(&config, names::TABLE_MANIFEST),
        ),
        airf_isf::table::manifest_bytes(&built.manifest),
    );
    let err = run(&cloud, &[memory]).unwrap_err();
    assert!(
        err.to_string().contains("other inputs")
            && err
                .to_string()
                .contains(&uri(&config, names::TABLE_MANIFEST)),
        "{err}"
    );
    assert!(puts(&cloud).is_empty());
}

/// No memory among the artifacts (memory not acquired): nothing is read, written or notified.
#[test]
fn without_memory_nothing_is_done() {
    let config = test_config();
    let cloud = FakeCloud::default();
    let out = run(&cloud, &[disk(&config)]).unwrap();
    assert!(out.images.is_empty());
    let s = cloud.lock();
    assert!(
        s.calls.is_empty() && s.published.is_empty(),
        "{:?}",
        s.calls
    );
}

/// The manifest address comes from the workflow's state: one outside this case's folder is
/// refused before anything is read.
#[test]
fn manifests_outside_the_case_folder_are_refused() {
    let config = test_config();
    let s = subject(INSTANCE);
    let good = uri(&config, "memory.manifest.json");
    assert!(manifest_location(&config, CASE, &s, &good).is_ok());
    for bad in [
        good.replace(CASE, "IR-8"),
        good.replace(INSTANCE, "i-0fffffffffffffff0"),
        good.replace(&config.evidence_bucket, "other-bucket"),
        good.replace("20261202T060000Z-r1", "../../IR-8/i-0123456789abcdef0/r"),
        good.replace("memory.manifest.json", "memory.kallsyms.txt"),
        good.replace("s3://", "https://"),
        good.replace("/20261202T060000Z-r1", "//20261202T060000Z-r1"),
    ] {
        assert!(
            manifest_location(&config, CASE, &s, &bad).is_err(),
            "{bad} was accepted"
        );
        let cloud = FakeCloud::default();
        let mut memory = capture(&cloud, &config, &toy_kernel(), &ALL, complete());
        memory.manifest = bad.clone();
        let err = run(&cloud, &[memory]).unwrap_err();
        assert_eq!(err.kind(), Kind::BadInput, "{bad}: {err}");
    }
}
