//! The one safetensors reader and writer of torchlens, and its one dtype table. Bundle blobs
//! ([`super::blob`]) and fastlog payloads ([`super::fastlog_store`]) are both written and read
//! here.
//!
//! Layout: a `u64` little-endian header length, a JSON header
//! `{"<name>": {"dtype", "shape", "data_offsets"}, ..., "__metadata__": {str: str}}` padded with
//! spaces to a multiple of 8, then the tensors' raw little-endian bytes, back to back in offset
//! order with no gaps (what the reference `safetensors` reader requires).

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::hex;
use crate::error::{CoreError, Result};

/// Largest safetensors header accepted (bytes).
pub const MAX_HEADER: u64 = 1 << 20;

/// Most dimensions a tensor may have.
pub const MAX_DIMS: usize = 64;

/// One element type: its torch name, its safetensors code and its size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dtype {
    /// Torch name (`str(torch.float32)` without `torch.`).
    pub torch: &'static str,
    /// Code in the safetensors header.
    pub code: &'static str,
    /// Bytes per element.
    pub size: usize,
    /// False for torchlens's extensions, which the reference reader refuses.
    pub standard: bool,
}

const fn dt(torch: &'static str, code: &'static str, size: usize) -> Dtype {
    Dtype {
        torch,
        code,
        size,
        standard: true,
    }
}

/// Every dtype a tensor file can hold. All but `complex128` are in the safetensors standard
/// (and load with `safetensors.torch`); `complex128` as `C128` is a torchlens extension.
pub const DTYPES: &[Dtype] = &[
    dt("float64", "F64", 8),
    dt("float32", "F32", 4),
    dt("float16", "F16", 2),
    dt("bfloat16", "BF16", 2),
    dt("float8_e4m3fn", "F8_E4M3", 1),
    dt("float8_e4m3fnuz", "F8_E4M3FNUZ", 1),
    dt("float8_e5m2", "F8_E5M2", 1),
    dt("float8_e5m2fnuz", "F8_E5M2FNUZ", 1),
    dt("int64", "I64", 8),
    dt("int32", "I32", 4),
    dt("int16", "I16", 2),
    dt("int8", "I8", 1),
    dt("uint64", "U64", 8),
    dt("uint32", "U32", 4),
    dt("uint16", "U16", 2),
    dt("uint8", "U8", 1),
    dt("bool", "BOOL", 1),
    dt("complex64", "C64", 8),
    Dtype {
        torch: "complex128",
        code: "C128",
        size: 16,
        standard: false,
    },
];

/// Looks up a dtype by its torch name (`"float32"`).
pub fn dtype_by_name(name: &str) -> Option<&'static Dtype> {
    DTYPES.iter().find(|d| d.torch == name)
}

/// Looks up a dtype by its safetensors code (`"F32"`).
pub fn dtype_by_code(code: &str) -> Option<&'static Dtype> {
    DTYPES.iter().find(|d| d.code == code)
}

fn unsupported(name: &str) -> CoreError {
    CoreError::bundle(format!("unsupported dtype {name:?}"))
}

/// Number of data bytes of a tensor, or an error on an unknown dtype or overflow.
pub fn nbytes(dtype: &str, shape: &[u64]) -> Result<u64> {
    let d = dtype_by_name(dtype).ok_or_else(|| unsupported(dtype))?;
    shape.iter().try_fold(d.size as u64, |n, &dim| {
        n.checked_mul(dim)
            .ok_or_else(|| CoreError::bundle("tensor shape overflows"))
    })
}

/// One tensor of a header: name, torch dtype name, shape and data offsets (relative to the
/// first data byte).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Key in the header.
    pub name: String,
    /// Torch dtype name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// First data byte.
    pub start: u64,
    /// One past the last data byte.
    pub end: u64,
}

/// A parsed header: the tensors in offset order and the string metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Tensors sorted by offset.
    pub tensors: Vec<TensorInfo>,
    /// `__metadata__` entries.
    pub metadata: Vec<(String, String)>,
    /// Offset of the first data byte in the file (8 + header length).
    pub data_start: u64,
}

impl Header {
    /// Bytes of the data section.
    pub fn data_len(&self) -> u64 {
        self.tensors.last().map_or(0, |t| t.end)
    }
}

/// Encodes a header (length prefix included) for tensors laid out back to back in the given
/// order: `(name, torch dtype, shape)`.
pub fn encode_header(tensors: &[(&str, &str, &[u64])], metadata: &[(String, String)]) -> Result<Vec<u8>> {
    let mut doc = Map::new();
    let mut off = 0u64;
    for &(name, dtype, shape) in tensors {
        if name == "__metadata__" || doc.contains_key(name) {
            return Err(CoreError::bundle(format!("invalid or duplicate tensor name {name:?}")));
        }
        let d = dtype_by_name(dtype).ok_or_else(|| unsupported(dtype))?;
        let end = off
            .checked_add(nbytes(dtype, shape)?)
            .ok_or_else(|| CoreError::bundle("tensor file too large"))?;
        let mut entry = Map::new();
        entry.insert("dtype".into(), Value::from(d.code));
        entry.insert("shape".into(), Value::from(shape.to_vec()));
        entry.insert("data_offsets".into(), Value::from(vec![off, end]));
        doc.insert(name.to_owned(), Value::Object(entry));
        off = end;
    }
    if !metadata.is_empty() {
        let meta: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        doc.insert("__metadata__".into(), Value::Object(meta));
    }
    let mut text = Value::Object(doc).to_string().into_bytes();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(text.len() + 8);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    Ok(out)
}

fn bad(msg: impl std::fmt::Display) -> CoreError {
    CoreError::bundle(format!("invalid safetensors header: {msg}"))
}

fn parse_tensor(name: &str, v: &Value) -> Result<TensorInfo> {
    let entry = v.as_object().ok_or_else(|| bad(format!("{name:?} is not an object")))?;
    let code = entry
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{name:?}: missing dtype")))?;
    let d = dtype_by_code(code).ok_or_else(|| bad(format!("{name:?}: unsupported dtype {code:?}")))?;
    let shape = entry
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("{name:?}: missing shape")))?
        .iter()
        .map(|x| x.as_u64().ok_or_else(|| bad("shape entries must be non-negative ints")))
        .collect::<Result<Vec<u64>>>()?;
    if shape.len() > MAX_DIMS {
        return Err(bad(format!("{name:?}: too many dimensions")));
    }
    let offs = entry
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("{name:?}: missing data_offsets")))?;
    let (Some(start), Some(end), 2) = (
        offs.first().and_then(Value::as_u64),
        offs.get(1).and_then(Value::as_u64),
        offs.len(),
    ) else {
        return Err(bad(format!("{name:?}: data_offsets must be two ints")));
    };
    let n = nbytes(d.torch, &shape)?;
    if end.checked_sub(start) != Some(n) {
        return Err(bad(format!(
            "data_offsets [{start}, {end}] of {name:?} do not match dtype {} and shape {shape:?}",
            d.torch
        )));
    }
    Ok(TensorInfo {
        name: name.to_owned(),
        dtype: d.torch.to_owned(),
        shape,
        start,
        end,
    })
}

/// Parses a header from the first bytes of a file (`prefix` must hold the whole header).
/// Tensors must tile the data section from offset 0 without gaps or overlaps.
pub fn parse_header(prefix: &[u8]) -> Result<Header> {
    parse_header_limited(prefix, MAX_HEADER)
}

/// [`parse_header`] accepting headers up to `max` bytes (shards of io format 2 have large ones).
pub fn parse_header_limited(prefix: &[u8], max: u64) -> Result<Header> {
    let len_bytes: [u8; 8] = prefix
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("file shorter than 8 bytes"))?;
    let hlen = u64::from_le_bytes(len_bytes);
    if hlen > max {
        return Err(bad(format!("header length {hlen} exceeds {max}")));
    }
    let text = prefix
        .get(8..8 + hlen as usize)
        .ok_or_else(|| bad("truncated header"))?;
    let value: Value = serde_json::from_slice(text).map_err(bad)?;
    let obj = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mut metadata = Vec::new();
    let mut tensors = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        if k == "__metadata__" {
            let m = v.as_object().ok_or_else(|| bad("__metadata__ is not an object"))?;
            for (mk, mv) in m {
                let s = mv.as_str().ok_or_else(|| bad("__metadata__ values must be strings"))?;
                metadata.push((mk.clone(), s.to_owned()));
            }
        } else {
            tensors.push(parse_tensor(k, v)?);
        }
    }
    tensors.sort_by_key(|t| (t.start, t.end));
    let mut off = 0;
    for t in &tensors {
        if t.start != off {
            return Err(bad(format!(
                "tensor {:?} starts at {}, expected {off}",
                t.name, t.start
            )));
        }
        off = t.end;
    }
    Ok(Header {
        tensors,
        metadata,
        data_start: 8 + hlen,
    })
}

/// Reads and parses the header of an open file and checks that the file is exactly as long as
/// the header says. Returns the raw header bytes (length prefix included) and the header.
pub fn read_header(f: &mut File, path: &Path) -> Result<(Vec<u8>, Header)> {
    read_header_limited(f, path, MAX_HEADER)
}

/// [`read_header`] accepting headers up to `max` bytes.
pub fn read_header_limited(f: &mut File, path: &Path, max: u64) -> Result<(Vec<u8>, Header)> {
    let io = |e: std::io::Error| CoreError::io(format!("reading {}", path.display()), &e);
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| {
        CoreError::bundle(format!(
            "truncated tensor file {}: shorter than 8 bytes",
            path.display()
        ))
    })?;
    let hlen = u64::from_le_bytes(len);
    if hlen > max {
        return Err(bad(format!("{}: header length {hlen} exceeds {max}", path.display())));
    }
    let mut prefix = vec![0u8; 8 + hlen as usize];
    prefix[..8].copy_from_slice(&len);
    f.read_exact(&mut prefix[8..])
        .map_err(|_| CoreError::bundle(format!("truncated tensor file {}: header cut short", path.display())))?;
    let header =
        parse_header_limited(&prefix, max).map_err(|e| CoreError::bundle(format!("{}: {e}", path.display())))?;
    let flen = f.metadata().map_err(io)?.len();
    let expect = header.data_start.saturating_add(header.data_len());
    if flen != expect {
        return Err(CoreError::bundle(format!(
            "truncated or padded tensor file {}: {flen} bytes, header says {expect}",
            path.display()
        )));
    }
    Ok((prefix, header))
}

/// Size and checksum of a written or scanned file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    /// File size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
}

/// Creates `path` and writes an encoded header followed by the data `chunks` (which must match
/// the header), hashing as it goes.
pub fn write_file<'a>(
    path: &Path,
    header: &'a [u8],
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<WrittenFile> {
    let io = |e: std::io::Error| CoreError::io(format!("writing {}", path.display()), &e);
    let mut f = File::create(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    for part in std::iter::once(header).chain(chunks) {
        hasher.update(part);
        f.write_all(part).map_err(io)?;
        bytes += part.len() as u64;
    }
    Ok(WrittenFile {
        bytes,
        sha256: hex(&hasher.finalize()),
    })
}

/// Hashes the rest of an open file into `h`.
pub fn hash_rest(f: &mut File, path: &Path, h: &mut Sha256) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| CoreError::io(format!("reading {}", path.display()), &e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// A whole tensor file: its string metadata and `(tensor, bytes)` in offset order.
pub type Tensors = (Vec<(String, String)>, Vec<(TensorInfo, Vec<u8>)>);

/// Reads every tensor of a file.
pub fn read_file(path: &Path) -> Result<Tensors> {
    let io = |e: std::io::Error| CoreError::io(format!("reading {}", path.display()), &e);
    let mut f = File::open(path).map_err(io)?;
    let (_, header) = read_header(&mut f, path)?;
    let mut out = Vec::with_capacity(header.tensors.len());
    for t in header.tensors {
        let mut data = vec![0u8; (t.end - t.start) as usize];
        f.read_exact(&mut data).map_err(io)?;
        out.push((t, data));
    }
    Ok((header.metadata, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_several_tensors() {
        let meta = vec![("kind".to_owned(), "activation".to_owned())];
        let h = encode_header(&[("b", "float32", &[2, 3]), ("a", "uint16", &[5])], &meta).unwrap();
        assert_eq!(h.len() % 8, 0);
        let p = parse_header(&h).unwrap();
        let names: Vec<&str> = p.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!((p.tensors[1].start, p.data_len()), (24, 34));
        assert_eq!(p.metadata, meta);
    }

    #[test]
    fn header_rejects_garbage_gaps_and_unknown_dtypes() {
        assert!(parse_header(b"").is_err());
        assert!(parse_header(&[255; 16]).is_err());
        let mut h = encode_header(&[("data", "int64", &[4])], &[]).unwrap();
        h[20] = b'{';
        assert!(parse_header(&h).is_err());
        let gap = br#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
        let mut file = (gap.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(gap);
        assert!(parse_header(&file).is_err());
        assert!(encode_header(&[("data", "qint8", &[1])], &[]).is_err());
    }

    #[test]
    fn table_is_consistent() {
        for d in DTYPES {
            assert_eq!(dtype_by_code(d.code), Some(d));
            assert_eq!(dtype_by_name(d.torch), Some(d));
        }
    }
}
