//! Bundle format: blob round trips, manifest validation, commit, writer, and a bounded fuzz of
//! the metadata readers (manifest and safetensors header) that must never panic.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::{Value, json};
use torchlens_core::CoreError;
use torchlens_core::bundle::blob::{parse_header, read_blob_into, scan_blob, write_blob};
use torchlens_core::bundle::dir::{commit, open_bundle, read_metadata, write_file};
use torchlens_core::bundle::manifest::parse_manifest;
use torchlens_core::bundle::shard::read_range;
use torchlens_core::bundle::writer::{Job, StreamWriter};
use torchlens_core::bundle::{blob_relative_path, sha256_hex};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tl-bundle-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("blobs")).unwrap();
    d
}

fn manifest(tensors: &[Value], meta: &[u8]) -> Value {
    json!({
        "io_format_version": 1,
        "torchlens_version": "0.1.0",
        "torch_version": "2.5.0",
        "python_version": "3.11.7",
        "platform": "linux-x86_64",
        "created_at": "2026-01-01T00:00:00Z",
        "bundle_format": "directory",
        "n_layers": 3,
        "n_activation_blobs": tensors.len(),
        "n_gradient_blobs": 0,
        "n_auxiliary_blobs": 0,
        "metadata": {"relative_path": "metadata.json", "format": "json", "bytes": meta.len(), "sha256": sha256_hex(meta)},
        "tensors": tensors,
        "unsupported_tensors": [],
    })
}

fn entry(id: u64, shape: &[u64], bytes: u64, sha: &str) -> Value {
    json!({
        "blob_id": id, "kind": "activation", "label": "x", "relative_path": blob_relative_path(id),
        "backend": "safetensors", "shape": shape, "dtype": "float32", "device_at_save": "cpu",
        "layout": "strided", "bytes": bytes, "sha256": sha,
    })
}

fn valid_manifest_bytes() -> Vec<u8> {
    let sha = "0".repeat(64);
    serde_json::to_vec_pretty(&manifest(
        &[entry(1, &[2, 3], 128, &sha), entry(2, &[4], 80, &sha)],
        b"{}",
    ))
    .unwrap()
}

#[test]
fn write_read_scan_round_trip() {
    let d = tmpdir("rt");
    let data: Vec<u8> = (0..24u8).collect();
    let path = d.join(blob_relative_path(1));
    let w = write_blob(&path, "float32", &[2, 3], &[("node".into(), "0".into())], &data).unwrap();
    assert_eq!(w.bytes, std::fs::metadata(&path).unwrap().len());
    let mut out = vec![0u8; 24];
    read_blob_into(&path, "float32", &[2, 3], Some(&w.sha256), &mut out).unwrap();
    assert_eq!(out, data);
    let (h, w2) = scan_blob(&path).unwrap();
    assert_eq!(
        (h.dtype.as_str(), h.shape.as_slice(), w2),
        ("float32", &[2u64, 3][..], w.clone())
    );
    // Wrong expectations and corruption are errors, not panics.
    assert!(read_blob_into(&path, "float64", &[2, 3], None, &mut out).is_err());
    assert!(read_blob_into(&path, "float32", &[2, 3], Some(&"0".repeat(64)), &mut out).is_err());
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 1]).unwrap();
    let err = scan_blob(&path).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(write_blob(&path, "float32", &[5], &[], &data).is_err());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn manifest_validation_names_the_problem() {
    assert!(parse_manifest(&valid_manifest_bytes()).is_ok());
    let check = |f: &dyn Fn(&mut Value), needle: &str| {
        let mut v: Value = serde_json::from_slice(&valid_manifest_bytes()).unwrap();
        f(&mut v);
        let err = parse_manifest(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, CoreError::Bundle(_)));
        assert!(err.to_string().contains(needle), "{err} lacks {needle}");
    };
    check(
        &|v| v["io_format_version"] = json!(3),
        "newer than this torchlens supports",
    );
    check(&|v| v["io_format_version"] = json!(2), "io format 2 entries have shard");
    check(
        &|v| v["tensors"][0]["relative_path"] = json!("../x"),
        "paths outside blobs/ are refused",
    );
    check(&|v| v["tensors"][1]["blob_id"] = json!(1), "duplicate blob_id");
    check(&|v| v["n_activation_blobs"] = json!(5), "blob counts");
    check(&|v| v["tensors"][0]["dtype"] = json!("object"), "unsupported dtype");
    check(&|v| v["tensors"][0]["sha256"] = json!("xyz"), "sha256");
    check(&|v| v["metadata"]["relative_path"] = json!("metadata.pkl"), "metadata");
    check(&|v| v["tensors"][0]["shape"] = json!([u64::MAX, u64::MAX]), "overflows");
}

/// A format-2 manifest: two float32 [4] tensors back to back in one 48-byte shard.
fn sharded_manifest() -> Value {
    let sha = "0".repeat(64);
    let t = |id: u64, offset: u64| {
        json!({
            "blob_id": id, "kind": "activation", "label": "x", "relative_path": "shards/00001.safetensors",
            "shard": 1, "offset": offset, "length": 16, "backend": "safetensors", "shape": [4],
            "dtype": "float32", "device_at_save": "cpu", "layout": "strided", "sha256": sha,
        })
    };
    let mut m = manifest(&[t(1, 16), t(2, 32)], b"{}");
    m["io_format_version"] = json!(2);
    m["shards"] = json!([{"relative_path": "shards/00001.safetensors", "bytes": 48, "data_start": 16}]);
    m
}

#[test]
fn sharded_manifest_ranges_are_checked() {
    let parsed = parse_manifest(&serde_json::to_vec(&sharded_manifest()).unwrap()).unwrap();
    assert_eq!(parsed.shards.len(), 1);
    let check = |f: &dyn Fn(&mut Value), needle: &str| {
        let mut v = sharded_manifest();
        f(&mut v);
        let err = parse_manifest(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains(needle), "{err} lacks {needle}");
    };
    check(&|v| v["tensors"][1]["offset"] = json!(24), "overlap");
    check(&|v| v["tensors"][1]["offset"] = json!(40), "lies outside");
    check(&|v| v["tensors"][0]["offset"] = json!(8), "lies outside");
    check(&|v| v["tensors"][0]["offset"] = json!(u64::MAX - 4), "lies outside");
    check(&|v| v["tensors"][0]["length"] = json!(12), "does not match");
    check(&|v| v["tensors"][0]["shard"] = json!(2), "not listed");
    check(&|v| v["tensors"][0]["shard"] = json!(0), "not listed");
    check(&|v| v["tensors"][0]["relative_path"] = json!("../x"), "outside shards/");
    check(&|v| v["shards"][0]["relative_path"] = json!("../x"), "outside shards/");
    check(&|v| v["shards"][0]["data_start"] = json!(13), "data_start");
    check(&|v| v["shards"][0]["data_start"] = json!(64), "data_start");
    check(&|v| v["tensors"][0]["bytes"] = json!(24), "no bytes");
    check(&|v| v["io_format_version"] = json!(1), "no shards");
}

#[test]
fn sharded_stream_writer_packs_and_reads_back() {
    let d = tmpdir("sharded-writer");
    let mut w = StreamWriter::new(d.clone(), 64, 3, Some(100)).unwrap();
    for i in 1..=20u64 {
        w.submit(Job {
            blob_id: i,
            dtype: "float32".into(),
            shape: vec![10],
            metadata: vec![("node".into(), i.to_string())],
            data: vec![i as u8; 40],
        })
        .unwrap();
    }
    let written = w.finish().unwrap();
    assert_eq!(written.len(), 20);
    assert_eq!(w.shard_files().len(), 10); // two 40-byte tensors per 100-byte shard
    for x in &written {
        let path = d.join(format!("shards/{:05}.safetensors", x.shard));
        let mut out = vec![0u8; 40];
        read_range(&path, x.offset, Some(&x.sha256), &mut out).unwrap();
        assert_eq!(out, vec![x.blob_id as u8; 40]);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn commit_open_and_refuse_existing_target() {
    let d = tmpdir("commit");
    let data = [0u8; 16];
    let w = write_blob(&d.join(blob_relative_path(1)), "float32", &[4], &[], &data).unwrap();
    let meta = br#"{"schema":"x"}"#;
    write_file(&d.join("metadata.json"), meta).unwrap();
    let m = serde_json::to_vec(&manifest(&[entry(1, &[4], w.bytes, &w.sha256)], meta)).unwrap();
    let target = d.with_extension("final");
    let _ = std::fs::remove_dir_all(&target);
    commit(&d, &target, &m).unwrap();
    let opened = open_bundle(&target).unwrap();
    assert_eq!(opened.manifest.tensors.len(), 1);
    assert_eq!(read_metadata(&target, &opened.manifest).unwrap(), meta);
    std::fs::create_dir_all(&d).unwrap();
    let err = commit(&d, &target, &m).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&target);
}

#[test]
fn stream_writer_bounded_queue_and_order() {
    let d = tmpdir("writer");
    let mut w = StreamWriter::new(d.clone(), 64, 3, None).unwrap();
    for i in 1..=20u64 {
        let data = vec![i as u8; 40];
        w.submit(Job {
            blob_id: i,
            dtype: "float32".into(),
            shape: vec![10],
            metadata: vec![],
            data,
        })
        .unwrap();
        w.append("journal.jsonl", format!("{i}\n").into_bytes()).unwrap();
    }
    let written = w.finish().unwrap();
    assert_eq!(
        written.iter().map(|x| x.blob_id).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    let journal = std::fs::read_to_string(d.join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 20);
    assert!(w.finish().is_err());
    let _ = std::fs::remove_dir_all(&d);
}

fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(pos, op, byte) in edits {
        if b.is_empty() {
            b.push(byte);
            continue;
        }
        let i = pos % b.len();
        match op % 3 {
            0 => b[i] = byte,
            1 => {
                b.remove(i);
            }
            _ => b.insert(i, byte),
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_manifest_reader_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12)) {
        let _ = parse_manifest(&mutate(&valid_manifest_bytes(), &edits));
    }

    #[test]
    fn fuzz_manifest_reader_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(parse_manifest(&bytes).is_err());
    }

    #[test]
    fn fuzz_blob_header_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12)) {
        let header = torchlens_core::bundle::blob::encode_header("int64", &[3, 4], &[("node".into(), "1".into())]).unwrap();
        let _ = parse_header(&mutate(&header, &edits));
    }
}
