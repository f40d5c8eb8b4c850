//! Bundle blobs: one tensor named `data` per safetensors file (format in [`super::safetensors`]),
//! with the bundle's checks: the header must match the manifest, the file its checksum.

use std::fs::File;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::hex;
use super::safetensors::{self, Header};
use crate::error::{CoreError, Result};

pub use super::safetensors::{WrittenFile as WrittenBlob, nbytes};

/// Name of the one tensor of a bundle blob.
pub const TENSOR_NAME: &str = "data";

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
    safetensors::encode_header(&[(TENSOR_NAME, dtype, shape)], metadata)
}

fn single(h: Header) -> Result<BlobHeader> {
    let data_len = h.data_len();
    match <[_; 1]>::try_from(h.tensors) {
        Ok([t]) if t.name == TENSOR_NAME => Ok(BlobHeader {
            dtype: t.dtype,
            shape: t.shape,
            data_start: h.data_start,
            data_len,
            metadata: h.metadata,
        }),
        _ => Err(CoreError::bundle(
            "invalid safetensors header: bundles hold one tensor named \"data\"",
        )),
    }
}

/// Parses a header from the first bytes of a blob (`prefix` must hold the whole header).
pub fn parse_header(prefix: &[u8]) -> Result<BlobHeader> {
    single(safetensors::parse_header(prefix)?)
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
    let partial = path.with_extension("safetensors.partial");
    let written = safetensors::write_file(&partial, &header, [data])?;
    std::fs::rename(&partial, path).map_err(|e| CoreError::io(format!("writing {}", path.display()), &e))?;
    Ok(written)
}

fn open_blob(path: &Path) -> Result<(File, Vec<u8>, BlobHeader)> {
    let mut f = File::open(path).map_err(|e| CoreError::io(format!("reading {}", path.display()), &e))?;
    let (prefix, header) = safetensors::read_header(&mut f, path)?;
    let header = single(header).map_err(|e| CoreError::bundle(format!("{}: {e}", path.display())))?;
    Ok((f, prefix, header))
}

/// Reads a blob's data into `out` (which must have exactly the data size), checking the header
/// against the expected dtype and shape and, when given, the file's SHA-256.
pub fn read_blob_into(path: &Path, dtype: &str, shape: &[u64], sha256: Option<&str>, out: &mut [u8]) -> Result<()> {
    let (mut f, prefix, header) = open_blob(path)?;
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
    std::io::Read::read_exact(&mut f, out).map_err(|e| CoreError::io(format!("reading {}", path.display()), &e))?;
    if let Some(expect) = sha256 {
        let mut h = Sha256::new();
        h.update(&prefix);
        h.update(&*out);
        if hex(&h.finalize()) != expect {
            return Err(CoreError::bundle(format!("checksum mismatch for {}", path.display())));
        }
    }
    Ok(())
}

/// Reads a blob's header and checksums the whole file (used by recovery).
pub fn scan_blob(path: &Path) -> Result<(BlobHeader, WrittenBlob)> {
    let (mut f, prefix, header) = open_blob(path)?;
    let mut h = Sha256::new();
    h.update(&prefix);
    safetensors::hash_rest(&mut f, path, &mut h)?;
    let bytes = header.data_start + header.data_len;
    Ok((
        header,
        WrittenBlob {
            bytes,
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
