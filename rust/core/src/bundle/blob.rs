//! Single-tensor safetensors files: `u64` little-endian header length, a JSON header
//! `{"data": {"dtype", "shape", "data_offsets"}, "__metadata__": {..}}` padded with spaces to a
//! multiple of 8, then the raw little-endian bytes.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::hex;
use crate::error::{CoreError, Result};

/// Largest safetensors header accepted (bytes).
pub const MAX_HEADER: u64 = 1 << 20;

/// Element dtypes a bundle can hold: (torch name, safetensors name, bytes per element).
pub const DTYPES: &[(&str, &str, usize)] = &[
    ("float16", "F16", 2),
    ("bfloat16", "BF16", 2),
    ("float32", "F32", 4),
    ("float64", "F64", 8),
    ("int8", "I8", 1),
    ("int16", "I16", 2),
    ("int32", "I32", 4),
    ("int64", "I64", 8),
    ("uint8", "U8", 1),
    ("bool", "BOOL", 1),
    ("complex64", "C64", 8),
    ("complex128", "C128", 16),
];

/// Looks up a dtype by its torch name (`"float32"`).
pub fn dtype_by_name(name: &str) -> Option<(&'static str, &'static str, usize)> {
    DTYPES.iter().copied().find(|d| d.0 == name)
}

fn dtype_by_st(name: &str) -> Option<(&'static str, &'static str, usize)> {
    DTYPES.iter().copied().find(|d| d.1 == name)
}

/// Number of data bytes of a tensor, or an error on overflow.
pub fn nbytes(dtype: &str, shape: &[u64]) -> Result<u64> {
    let (_, _, size) = dtype_by_name(dtype).ok_or_else(|| CoreError::bundle(format!("unsupported dtype {dtype:?}")))?;
    let mut n: u64 = size as u64;
    for &d in shape {
        n = n
            .checked_mul(d)
            .ok_or_else(|| CoreError::bundle("tensor shape overflows"))?;
    }
    Ok(n)
}

/// Parsed header of one blob file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobHeader {
    /// Torch dtype name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Offset of the first data byte in the file.
    pub data_start: u64,
    /// Number of data bytes.
    pub data_len: u64,
    /// The free-form string metadata (`kind`, `label`, `node`).
    pub metadata: Vec<(String, String)>,
}

/// Encodes the header (length prefix included).
pub fn encode_header(dtype: &str, shape: &[u64], metadata: &[(String, String)]) -> Result<Vec<u8>> {
    let (_, st, _) = dtype_by_name(dtype).ok_or_else(|| CoreError::bundle(format!("unsupported dtype {dtype:?}")))?;
    let n = nbytes(dtype, shape)?;
    let mut meta = Map::new();
    for (k, v) in metadata {
        meta.insert(k.clone(), Value::String(v.clone()));
    }
    let header = json!({
        "data": {"dtype": st, "shape": shape, "data_offsets": [0, n]},
        "__metadata__": meta,
    });
    let mut text = header.to_string().into_bytes();
    while (text.len() + 8) % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(text.len() + 8);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    Ok(out)
}

fn bad(msg: impl std::fmt::Display) -> CoreError {
    CoreError::bundle(format!("invalid safetensors header: {msg}"))
}

/// Parses a header from the first bytes of a blob (`prefix` must hold the whole header).
pub fn parse_header(prefix: &[u8]) -> Result<BlobHeader> {
    let len_bytes: [u8; 8] = prefix
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("file shorter than 8 bytes"))?;
    let hlen = u64::from_le_bytes(len_bytes);
    if hlen > MAX_HEADER {
        return Err(bad(format!("header length {hlen} exceeds {MAX_HEADER}")));
    }
    let text = prefix
        .get(8..8 + hlen as usize)
        .ok_or_else(|| bad("truncated header"))?;
    let value: Value = serde_json::from_slice(text).map_err(bad)?;
    let obj = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mut metadata = Vec::new();
    let mut entry = None;
    for (k, v) in obj {
        if k == "__metadata__" {
            let m = v.as_object().ok_or_else(|| bad("__metadata__ is not an object"))?;
            for (mk, mv) in m {
                let s = mv.as_str().ok_or_else(|| bad("__metadata__ values must be strings"))?;
                metadata.push((mk.clone(), s.to_owned()));
            }
        } else if k == "data" {
            entry = Some(v);
        } else {
            return Err(bad(format!(
                "unexpected tensor key {k:?} (bundles hold one tensor named \"data\")"
            )));
        }
    }
    let entry = entry
        .and_then(Value::as_object)
        .ok_or_else(|| bad("missing tensor \"data\""))?;
    let st = entry
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing dtype"))?;
    let (dtype, _, _) = dtype_by_st(st).ok_or_else(|| bad(format!("unsupported dtype {st:?}")))?;
    let shape = entry
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing shape"))?
        .iter()
        .map(|d| d.as_u64().ok_or_else(|| bad("shape entries must be non-negative ints")))
        .collect::<Result<Vec<u64>>>()?;
    let offs = entry
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing data_offsets"))?;
    let (Some(a), Some(b), 2) = (
        offs.first().and_then(Value::as_u64),
        offs.get(1).and_then(Value::as_u64),
        offs.len(),
    ) else {
        return Err(bad("data_offsets must be two ints"));
    };
    let n = nbytes(dtype, &shape)?;
    if a != 0 || b != n {
        return Err(bad(format!(
            "data_offsets [{a}, {b}] do not match dtype {dtype} and shape {shape:?}"
        )));
    }
    Ok(BlobHeader {
        dtype: dtype.to_owned(),
        shape,
        data_start: 8 + hlen,
        data_len: n,
        metadata,
    })
}

/// Size and checksum of a written blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenBlob {
    /// File size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
}

/// Writes one blob file: to `<path>.partial` first, then renamed, so that a crash never leaves a
/// truncated file under the final name.
pub fn write_blob(
    path: &Path,
    dtype: &str,
    shape: &[u64],
    metadata: &[(String, String)],
    data: &[u8],
) -> Result<WrittenBlob> {
    let header = encode_header(dtype, shape, metadata)?;
    let expect = nbytes(dtype, shape)?;
    if data.len() as u64 != expect {
        return Err(CoreError::bundle(format!(
            "tensor data has {} bytes, dtype {dtype} and shape {shape:?} need {expect}",
            data.len()
        )));
    }
    let mut hasher = Sha256::new();
    hasher.update(&header);
    hasher.update(data);
    let partial = path.with_extension("safetensors.partial");
    let io = |e: std::io::Error| CoreError::io(format!("writing {}", path.display()), &e);
    {
        let mut f = File::create(&partial).map_err(io)?;
        f.write_all(&header).map_err(io)?;
        f.write_all(data).map_err(io)?;
    }
    std::fs::rename(&partial, path).map_err(io)?;
    Ok(WrittenBlob {
        bytes: (header.len() + data.len()) as u64,
        sha256: hex(&hasher.finalize()),
    })
}

fn read_prefix(f: &mut File, path: &Path) -> Result<(Vec<u8>, BlobHeader)> {
    let io = |e: std::io::Error| CoreError::io(format!("reading {}", path.display()), &e);
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| CoreError::bundle(format!("truncated blob {}: shorter than 8 bytes", path.display())))?;
    let hlen = u64::from_le_bytes(len);
    if hlen > MAX_HEADER {
        return Err(bad(format!(
            "{}: header length {hlen} exceeds {MAX_HEADER}",
            path.display()
        )));
    }
    let mut prefix = vec![0u8; 8 + hlen as usize];
    prefix[..8].copy_from_slice(&len);
    f.read_exact(&mut prefix[8..])
        .map_err(|_| CoreError::bundle(format!("truncated blob {}: header cut short", path.display())))?;
    let header = parse_header(&prefix).map_err(|e| CoreError::bundle(format!("{}: {e}", path.display())))?;
    let flen = f.metadata().map_err(io)?.len();
    if flen != header.data_start + header.data_len {
        return Err(CoreError::bundle(format!(
            "truncated or padded blob {}: {} bytes, header says {}",
            path.display(),
            flen,
            header.data_start + header.data_len
        )));
    }
    Ok((prefix, header))
}

/// Reads a blob's data into `out` (which must have exactly the data size), checking the header
/// against the expected dtype and shape and, when given, the file's SHA-256.
pub fn read_blob_into(path: &Path, dtype: &str, shape: &[u64], sha256: Option<&str>, out: &mut [u8]) -> Result<()> {
    let io = |e: std::io::Error| CoreError::io(format!("reading {}", path.display()), &e);
    let mut f = File::open(path).map_err(io)?;
    let (prefix, header) = read_prefix(&mut f, path)?;
    if header.dtype != dtype || header.shape != shape {
        return Err(CoreError::bundle(format!(
            "blob {} holds {} {:?}, the manifest says {dtype} {shape:?}",
            path.display(),
            header.dtype,
            header.shape
        )));
    }
    if out.len() as u64 != header.data_len {
        return Err(CoreError::bundle(format!(
            "output buffer has {} bytes, blob {} has {}",
            out.len(),
            path.display(),
            header.data_len
        )));
    }
    f.read_exact(out).map_err(io)?;
    if let Some(expect) = sha256 {
        let mut h = Sha256::new();
        h.update(&prefix);
        h.update(&*out);
        let got = hex(&h.finalize());
        if got != expect {
            return Err(CoreError::bundle(format!("checksum mismatch for {}", path.display())));
        }
    }
    Ok(())
}

/// Reads a blob's header and checksums the whole file (used by recovery).
pub fn scan_blob(path: &Path) -> Result<(BlobHeader, WrittenBlob)> {
    let io = |e: std::io::Error| CoreError::io(format!("reading {}", path.display()), &e);
    let mut f = File::open(path).map_err(io)?;
    let (prefix, header) = read_prefix(&mut f, path)?;
    let mut h = Sha256::new();
    h.update(&prefix);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok((
        header.clone(),
        WrittenBlob {
            bytes: header.data_start + header.data_len,
            sha256: hex(&h.finalize()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let meta = vec![("kind".to_owned(), "activation".to_owned())];
        let h = encode_header("float32", &[2, 3], &meta).unwrap();
        assert_eq!(h.len() % 8, 0);
        let p = parse_header(&h).unwrap();
        assert_eq!(p.dtype, "float32");
        assert_eq!(p.shape, vec![2, 3]);
        assert_eq!(p.data_len, 24);
        assert_eq!(p.metadata, meta);
    }

    #[test]
    fn header_rejects_garbage() {
        assert!(parse_header(b"").is_err());
        assert!(parse_header(&[255; 16]).is_err());
        let mut h = encode_header("int64", &[4], &[]).unwrap();
        h[20] = b'{';
        assert!(parse_header(&h).is_err());
    }
}
