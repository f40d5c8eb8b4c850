//! Shard files of io format 2: many tensors per standard safetensors file
//! (`shards/00001.safetensors`, ...), each tensor named by its 10-digit blob id. The manifest
//! records every tensor's shard, absolute byte offset, length and the SHA-256 of its bytes, so a
//! lazy read touches only that byte range and an eager read goes through a shard in one pass.
//!
//! * [`write_shard`]: a whole shard at once (`save`): exact header, data written sequentially
//!   while other threads checksum.
//! * [`ShardAppender`]: streaming. A shard starts with a reserved header region; tensors are
//!   appended as they arrive and each is journaled (`tensors.jsonl`) after its bytes are written;
//!   the header is filled in when the shard is closed (rolled over or finished).
//! * [`recover_shards`]: after a crash, keeps the journaled tensors whose bytes are complete and
//!   intact, truncates each shard after them and writes its header.
//! * [`read_shard`] / [`read_range`]: eager and lazy reads, checking ranges and checksums.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::dir::{read_limited, refuse_symlink};
use super::safetensors::{self, dtype_by_name, nbytes};
use super::{MAX_JSON_BYTES, hex};
use crate::error::{CoreError, Result};

/// Directory of the shard files inside a bundle.
pub const SHARD_DIR: &str = "shards";
/// Journal of the tensors appended to the shards of a streamed capture (removed at commit).
pub const TENSOR_JOURNAL: &str = "tensors.jsonl";
/// Largest shard header accepted (bytes).
pub const MAX_SHARD_HEADER: u64 = 16 << 20;
/// Highest shard index (`shards/99999.safetensors`).
pub const MAX_SHARD_INDEX: u64 = 99_999;
/// Header region reserved by the first streamed shard (doubled when a shard's header fills up).
pub const FIRST_RESERVE: u64 = 64 << 10;
/// Default data bytes per shard before a new one is started.
pub const DEFAULT_SHARD_BYTES: u64 = 512 << 20;

const META: &str = r#""__metadata__":{"format":"pt"}"#;

/// Relative path of a shard: `shards/00001.safetensors`.
pub fn shard_relative_path(index: u64) -> String {
    format!("{SHARD_DIR}/{index:05}.safetensors")
}

/// Name of a tensor in a shard header: its 10-digit blob id.
pub fn tensor_name(blob_id: u64) -> String {
    format!("{blob_id:010}")
}

/// Where one tensor was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Blob id.
    pub blob_id: u64,
    /// Shard index (1-based).
    pub shard: u64,
    /// Offset of the first data byte in the shard file.
    pub offset: u64,
    /// Number of data bytes.
    pub length: u64,
    /// SHA-256 of the data bytes, lower-case hex.
    pub sha256: String,
}

/// One shard file as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardFile {
    /// Shard index (1-based).
    pub index: u64,
    /// File size.
    pub bytes: u64,
    /// Offset of the data section (8 + header length).
    pub data_start: u64,
}

/// One tensor to store.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    /// Blob id (the tensor's name).
    pub blob_id: u64,
    /// Torch dtype name.
    pub dtype: &'a str,
    /// Shape.
    pub shape: &'a [u64],
    /// The tensor's bytes (row-major, little-endian).
    pub data: &'a [u8],
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> CoreError {
    let ctx = format!("{what} {}", path.display());
    move |e| CoreError::io(ctx.clone(), &e)
}

fn checked_len(dtype: &str, shape: &[u64], data: &[u8]) -> Result<u64> {
    let n = nbytes(dtype, shape)?;
    if data.len() as u64 != n {
        return Err(CoreError::bundle(format!(
            "tensor data has {} bytes, dtype {dtype} and shape {shape:?} need {n}",
            data.len()
        )));
    }
    Ok(n)
}

/// `"<name>":{"dtype":..,"shape":[..],"data_offsets":[start,end]}` (offsets relative to the data
/// section).
fn entry_text(name: &str, dtype: &str, shape: &[u64], start: u64, end: u64) -> Result<String> {
    let d = dtype_by_name(dtype).ok_or_else(|| CoreError::bundle(format!("unsupported dtype {dtype:?}")))?;
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    Ok(format!(
        r#""{name}":{{"dtype":"{}","shape":[{}],"data_offsets":[{start},{end}]}}"#,
        d.code,
        dims.join(",")
    ))
}

/// Length of `{META,e1,e2,...}` for entries whose lengths sum to `sum` (`count` of them).
fn text_len(sum: u64, count: u64) -> u64 {
    2 + META.len() as u64 + sum + count
}

/// The JSON header padded with spaces to `region` bytes (a multiple of 8), length prefix first.
fn encode(entries: &[String], region: u64) -> Result<Vec<u8>> {
    let mut text = String::with_capacity(region as usize);
    text.push('{');
    text.push_str(META);
    for e in entries {
        text.push(',');
        text.push_str(e);
    }
    text.push('}');
    if text.len() as u64 > region || region > MAX_SHARD_HEADER {
        return Err(CoreError::bundle(format!(
            "shard header of {} bytes does not fit its {region}-byte region",
            text.len()
        )));
    }
    let mut out = Vec::with_capacity(region as usize + 8);
    out.extend_from_slice(&region.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.resize(region as usize + 8, b' ');
    Ok(out)
}

/// SHA-256 of each slice, on up to four threads.
pub fn hash_all(datas: &[&[u8]]) -> Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(4);
    let total: usize = datas.iter().map(|d| d.len()).sum();
    if threads <= 1 || datas.len() < 2 || total < (1 << 20) {
        return Ok(datas.iter().map(|d| hex(&Sha256::digest(d))).collect());
    }
    // Contiguous groups of about equal bytes.
    let per = total.div_ceil(threads);
    let mut groups: Vec<&[&[u8]]> = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (i, d) in datas.iter().enumerate() {
        acc += d.len();
        if acc >= per {
            groups.push(&datas[start..=i]);
            start = i + 1;
            acc = 0;
        }
    }
    if start < datas.len() {
        groups.push(&datas[start..]);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter()
            .map(|g| s.spawn(move || g.iter().map(|d| hex(&Sha256::digest(d))).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(datas.len());
        for h in handles {
            out.extend(h.join().map_err(|_| CoreError::bundle("a checksum thread panicked"))?);
        }
        Ok(out)
    })
}

/// Writes shard `index` of the bundle directory `dir` holding `items` back to back (exact
/// header), checksumming on other threads while the bytes are written.
pub fn write_shard(dir: &Path, index: u64, items: &[Item<'_>]) -> Result<(ShardFile, Vec<Placement>)> {
    if index == 0 || index > MAX_SHARD_INDEX {
        return Err(CoreError::bundle(format!("shard index {index} out of range")));
    }
    let mut entries = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut off = 0u64;
    for it in items {
        if !seen.insert(it.blob_id) {
            return Err(CoreError::bundle(format!(
                "duplicate blob_id {} in a shard",
                it.blob_id
            )));
        }
        let n = checked_len(it.dtype, it.shape, it.data)?;
        let end = off.checked_add(n).ok_or_else(|| CoreError::bundle("shard too large"))?;
        entries.push(entry_text(&tensor_name(it.blob_id), it.dtype, it.shape, off, end)?);
        off = end;
    }
    let sum: u64 = entries.iter().map(|e| e.len() as u64).sum();
    let region = text_len(sum, entries.len() as u64).next_multiple_of(8);
    let header = encode(&entries, region)?;
    let data_start = header.len() as u64;
    let path = dir.join(shard_relative_path(index));
    let datas: Vec<&[u8]> = items.iter().map(|i| i.data).collect();
    let (written, shas) = std::thread::scope(|s| {
        let hasher = s.spawn(|| hash_all(&datas));
        let written = (|| -> Result<()> {
            let f = File::create(&path).map_err(io_err("cannot create", &path))?;
            let mut w = BufWriter::with_capacity(4 << 20, f);
            w.write_all(&header).map_err(io_err("cannot write", &path))?;
            for d in &datas {
                w.write_all(d).map_err(io_err("cannot write", &path))?;
            }
            w.flush().map_err(io_err("cannot write", &path))
        })();
        (written, hasher.join())
    });
    written?;
    let shas = shas.map_err(|_| CoreError::bundle("a checksum thread panicked"))??;
    let mut placements = Vec::with_capacity(items.len());
    let mut pos = data_start;
    for (it, sha) in items.iter().zip(shas) {
        let n = it.data.len() as u64;
        placements.push(Placement {
            blob_id: it.blob_id,
            shard: index,
            offset: pos,
            length: n,
            sha256: sha,
        });
        pos += n;
    }
    Ok((
        ShardFile {
            index,
            bytes: pos,
            data_start,
        },
        placements,
    ))
}

struct Entry {
    name: String,
    dtype: String,
    shape: Vec<u64>,
    start: u64,
    end: u64,
}

struct OpenShard {
    index: u64,
    path: PathBuf,
    file: File,
    data_start: u64,
    entries: Vec<Entry>,
    by_blob: HashMap<u64, usize>,
    text_sum: u64,
    data_len: u64,
    renamed: u64,
}

impl OpenShard {
    fn close(mut self) -> Result<ShardFile> {
        let texts = self
            .entries
            .iter()
            .map(|e| entry_text(&e.name, &e.dtype, &e.shape, e.start, e.end))
            .collect::<Result<Vec<_>>>()?;
        let header = encode(&texts, self.data_start - 8)?;
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.write_all(&header))
            .map_err(io_err("cannot write", &self.path))?;
        Ok(ShardFile {
            index: self.index,
            bytes: self.data_start + self.data_len,
            data_start: self.data_start,
        })
    }
}

/// Appends tensors to the shards of a bundle directory as they arrive (streaming capture).
pub struct ShardAppender {
    dir: PathBuf,
    cap: u64,
    reserve: u64,
    next_index: u64,
    cur: Option<OpenShard>,
    journal: File,
    journal_path: PathBuf,
    placements: BTreeMap<u64, Placement>,
    closed: Vec<ShardFile>,
}

/// Highest shard index present in `<dir>/shards/` (0 when none).
fn last_index(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir.join(SHARD_DIR)) else {
        return 0;
    };
    rd.filter_map(std::result::Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.split('.').next().and_then(|s| s.parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0)
}

impl ShardAppender {
    /// Starts appending to new shards of `dir` (after any shard already there), rolling over
    /// after `cap` data bytes.
    pub fn new(dir: PathBuf, cap: u64) -> Result<Self> {
        let sdir = dir.join(SHARD_DIR);
        fs::create_dir_all(&sdir).map_err(io_err("cannot create", &sdir))?;
        let journal_path = dir.join(TENSOR_JOURNAL);
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io_err("cannot open", &journal_path))?;
        Ok(Self {
            next_index: last_index(&dir) + 1,
            dir,
            cap: cap.max(1),
            reserve: FIRST_RESERVE,
            cur: None,
            journal,
            journal_path,
            placements: BTreeMap::new(),
            closed: Vec::new(),
        })
    }

    fn journal_line(&mut self, v: &serde_json::Value) -> Result<()> {
        let mut line = v.to_string();
        line.push('\n');
        self.journal
            .write_all(line.as_bytes())
            .map_err(io_err("cannot append to", &self.journal_path))
    }

    fn open_next(&mut self) -> Result<()> {
        let index = self.next_index;
        if index > MAX_SHARD_INDEX {
            return Err(CoreError::bundle("too many shards"));
        }
        let path = self.dir.join(shard_relative_path(index));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err("cannot create", &path))?;
        let data_start = 8 + self.reserve;
        file.seek(SeekFrom::Start(data_start))
            .map_err(io_err("cannot write", &path))?;
        self.journal_line(&serde_json::json!({"shard": index, "data_start": data_start}))?;
        self.next_index += 1;
        self.cur = Some(OpenShard {
            index,
            path,
            file,
            data_start,
            entries: Vec::new(),
            by_blob: HashMap::new(),
            text_sum: 0,
            data_len: 0,
            renamed: 0,
        });
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(cur) = self.cur.take() {
            self.closed.push(cur.close()?);
        }
        Ok(())
    }

    /// Appends one tensor whose bytes hash to `sha256`; journals it once its bytes are written.
    pub fn append(
        &mut self,
        blob_id: u64,
        dtype: &str,
        shape: &[u64],
        metadata: &[(String, String)],
        data: &[u8],
        sha256: String,
    ) -> Result<()> {
        let n = checked_len(dtype, shape, data)?;
        let name = tensor_name(blob_id);
        loop {
            if let Some(cur) = &self.cur {
                let elen =
                    entry_text(&name, dtype, shape, cur.data_len, cur.data_len.saturating_add(n))?.len() as u64 + 16; // room for renaming a superseded entry of the same blob
                let fits_header = text_len(cur.text_sum + elen, cur.entries.len() as u64 + 1) <= cur.data_start - 8;
                let fits_data = cur.data_len == 0 || cur.data_len.saturating_add(n) <= self.cap;
                if fits_header && fits_data {
                    break;
                }
                if !fits_header {
                    if cur.entries.is_empty() && self.reserve >= MAX_SHARD_HEADER / 2 {
                        return Err(CoreError::bundle("tensor entry too large for a shard header"));
                    }
                    self.reserve = (self.reserve * 2).min(MAX_SHARD_HEADER / 2);
                }
                self.close_current()?;
            }
            self.open_next()?;
        }
        let Some(cur) = self.cur.as_mut() else {
            return Err(CoreError::bundle("no open shard"));
        };
        cur.file.write_all(data).map_err(io_err("cannot write", &cur.path))?;
        let (start, offset, index) = (cur.data_len, cur.data_start + cur.data_len, cur.index);
        if let Some(&old) = cur.by_blob.get(&blob_id) {
            // A blob written again (a retried capture) supersedes the earlier bytes, which stay
            // in the file under another name.
            cur.renamed += 1;
            let e = &mut cur.entries[old];
            e.name = format!("{name}~{}", cur.renamed);
        }
        let text = entry_text(&name, dtype, shape, start, start + n)?.len() as u64;
        cur.by_blob.insert(blob_id, cur.entries.len());
        cur.entries.push(Entry {
            name,
            dtype: dtype.to_owned(),
            shape: shape.to_vec(),
            start,
            end: start + n,
        });
        cur.text_sum += text + 16;
        cur.data_len += n;
        let meta: Vec<[&str; 2]> = metadata.iter().map(|(k, v)| [k.as_str(), v.as_str()]).collect();
        self.journal_line(&serde_json::json!({
            "blob_id": blob_id, "shard": index, "offset": offset, "length": n, "dtype": dtype,
            "shape": shape, "sha256": sha256, "meta": meta,
        }))?;
        self.placements.insert(
            blob_id,
            Placement {
                blob_id,
                shard: index,
                offset,
                length: n,
                sha256,
            },
        );
        Ok(())
    }

    /// Closes the open shard; returns the latest placement of each blob (by blob id) and the
    /// shards this appender wrote.
    pub fn finish(mut self) -> Result<(Vec<Placement>, Vec<ShardFile>)> {
        self.close_current()?;
        let _ = self.journal.sync_data();
        Ok((self.placements.into_values().collect(), self.closed))
    }
}

/// A tensor found complete by [`recover_shards`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// Where it is.
    pub placement: Placement,
    /// Torch dtype name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// The string metadata given when it was written (`kind`, `node`, ...).
    pub metadata: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Tensor {
        blob_id: u64,
        shard: u64,
        offset: u64,
        length: u64,
        dtype: String,
        shape: Vec<u64>,
        sha256: String,
        meta: Vec<(String, String)>,
    },
    Open {
        shard: u64,
        data_start: u64,
    },
}

/// Keeps the journaled tensors of an interrupted capture's shards whose bytes are complete and
/// match their checksum (per shard: the longest such prefix), truncates each shard after them
/// and writes its header; removes other files of `shards/`. Returns the kept tensors (the latest
/// of each blob id) in blob id order.
pub fn recover_shards(dir: &Path) -> Result<Vec<Recovered>> {
    let jpath = dir.join(TENSOR_JOURNAL);
    refuse_symlink(&jpath, "tensor journal")?;
    let bytes = if jpath.exists() {
        read_limited(&jpath, MAX_JSON_BYTES)?
    } else {
        Vec::new()
    };
    let mut opens: BTreeMap<u64, u64> = BTreeMap::new();
    let mut tensors: BTreeMap<u64, Vec<Recovered>> = BTreeMap::new();
    for line in bytes.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(l) = serde_json::from_slice::<Line>(line) else {
            break; // cut short by the crash
        };
        match l {
            Line::Open { shard, data_start } => {
                let ok = (1..=MAX_SHARD_INDEX).contains(&shard)
                    && data_start >= 8
                    && data_start % 8 == 0
                    && data_start - 8 <= MAX_SHARD_HEADER;
                if !ok {
                    return Err(CoreError::bundle(format!("invalid tensor journal {}", jpath.display())));
                }
                opens.insert(shard, data_start);
                tensors.entry(shard).or_default().clear();
            }
            Line::Tensor {
                blob_id,
                shard,
                offset,
                length,
                dtype,
                shape,
                sha256,
                meta,
            } => {
                if nbytes(&dtype, &shape).ok() != Some(length) || !opens.contains_key(&shard) {
                    break;
                }
                tensors.entry(shard).or_default().push(Recovered {
                    placement: Placement {
                        blob_id,
                        shard,
                        offset,
                        length,
                        sha256,
                    },
                    dtype,
                    shape,
                    metadata: meta,
                });
            }
        }
    }
    let mut kept: BTreeMap<u64, Recovered> = BTreeMap::new();
    let mut keep_files = std::collections::HashSet::new();
    for (&index, &data_start) in &opens {
        let path = dir.join(shard_relative_path(index));
        refuse_symlink(&path, "shard")?;
        let Ok(mut f) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        let flen = f.metadata().map_err(io_err("cannot stat", &path))?.len();
        let mut good: Vec<Recovered> = Vec::new();
        let mut end = data_start;
        let mut buf = Vec::new();
        for t in tensors.remove(&index).unwrap_or_default() {
            let p = &t.placement;
            if p.offset != end || p.offset.checked_add(p.length).is_none_or(|e| e > flen) {
                break;
            }
            buf.resize(p.length as usize, 0);
            let read = f.seek(SeekFrom::Start(p.offset)).and_then(|_| f.read_exact(&mut buf));
            if read.is_err() || hex(&Sha256::digest(&buf)) != p.sha256 {
                break;
            }
            end += p.length;
            good.push(t);
        }
        if good.is_empty() {
            drop(f);
            let _ = fs::remove_file(&path);
            continue;
        }
        let mut counts: HashMap<u64, u64> = HashMap::new();
        for t in good.iter().rev() {
            *counts.entry(t.placement.blob_id).or_default() += 1;
        }
        let mut texts = Vec::with_capacity(good.len());
        let mut renamed = 0;
        let mut seen: HashMap<u64, u64> = HashMap::new();
        for t in &good {
            let p = &t.placement;
            let k = seen.entry(p.blob_id).or_default();
            *k += 1;
            let name = if *k < counts[&p.blob_id] {
                renamed += 1;
                format!("{}~{renamed}", tensor_name(p.blob_id))
            } else {
                tensor_name(p.blob_id)
            };
            let start = p.offset - data_start;
            texts.push(entry_text(&name, &t.dtype, &t.shape, start, start + p.length)?);
        }
        let header = encode(&texts, data_start - 8)?;
        f.set_len(end)
            .and_then(|()| f.seek(SeekFrom::Start(0)))
            .and_then(|_| f.write_all(&header))
            .map_err(io_err("cannot write", &path))?;
        keep_files.insert(format!("{index:05}.safetensors"));
        for t in good {
            kept.insert(t.placement.blob_id, t);
        }
    }
    let sdir = dir.join(SHARD_DIR);
    if let Ok(rd) = fs::read_dir(&sdir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep_files.contains(&name) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(kept.into_values().collect())
}

/// Size and data offset of every shard file of `dir` (by index), read from their length
/// prefixes; errors on a symlink or a file that is not a shard.
pub fn shard_files(dir: &Path) -> Result<Vec<ShardFile>> {
    let sdir = dir.join(SHARD_DIR);
    refuse_symlink(&sdir, "shards directory")?;
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&sdir) else {
        return Ok(out);
    };
    for e in rd {
        let e = e.map_err(io_err("cannot list", &sdir))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let index = name
            .strip_suffix(".safetensors")
            .filter(|s| s.len() == 5)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| CoreError::bundle(format!("unexpected file {}", path.display())))?;
        refuse_symlink(&path, "shard")?;
        let mut f = File::open(&path).map_err(io_err("cannot open", &path))?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len).map_err(io_err("cannot read", &path))?;
        let bytes = f.metadata().map_err(io_err("cannot stat", &path))?.len();
        out.push(ShardFile {
            index,
            bytes,
            data_start: 8 + u64::from_le_bytes(len),
        });
    }
    out.sort_by_key(|s| s.index);
    Ok(out)
}

/// One tensor to read from a shard.
#[derive(Debug)]
pub struct ReadItem<'a> {
    /// Blob id (its name in the shard header).
    pub blob_id: u64,
    /// Torch dtype name the manifest gives.
    pub dtype: String,
    /// Shape the manifest gives.
    pub shape: Vec<u64>,
    /// Offset of its first byte in the file.
    pub offset: u64,
    /// Expected SHA-256 of its bytes (None: not checked).
    pub sha256: Option<String>,
    /// Where its bytes go (exactly its length).
    pub out: &'a mut [u8],
}

fn mismatch(path: &Path, blob_id: u64, what: &str) -> CoreError {
    CoreError::bundle(format!(
        "shard {} does not match the manifest for blob_id={blob_id}: {what}",
        path.display()
    ))
}

fn verify(path: &Path, items: &[ReadItem<'_>]) -> Result<()> {
    let datas: Vec<&[u8]> = items.iter().map(|i| &*i.out).collect();
    let shas = hash_all(&datas)?;
    for (it, sha) in items.iter().zip(shas) {
        if let Some(expect) = &it.sha256 {
            if *expect != sha {
                return Err(CoreError::bundle(format!(
                    "Checksum mismatch for blob_id={} (in {})",
                    it.blob_id,
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// Eager read: checks the shard's size and header against the manifest (`bytes`, `data_start`,
/// each item's name, dtype, shape and range), reads the items in one pass in offset order and
/// verifies their checksums.
pub fn read_shard(path: &Path, bytes: u64, data_start: u64, items: &mut [ReadItem<'_>]) -> Result<()> {
    refuse_symlink(path, "shard")?;
    let mut f = File::open(path).map_err(io_err("cannot open", path))?;
    let flen = f.metadata().map_err(io_err("cannot stat", path))?.len();
    if flen != bytes {
        return Err(CoreError::bundle(format!(
            "shard {} has {flen} bytes, the manifest says {bytes} (truncated?)",
            path.display()
        )));
    }
    let (_, header) = safetensors::read_header_limited(&mut f, path, MAX_SHARD_HEADER)?;
    if header.data_start != data_start {
        return Err(CoreError::bundle(format!(
            "shard {} has its data at {}, the manifest says {data_start}",
            path.display(),
            header.data_start
        )));
    }
    let by_name: HashMap<&str, &safetensors::TensorInfo> =
        header.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    for it in items.iter() {
        let name = tensor_name(it.blob_id);
        let t = by_name
            .get(name.as_str())
            .ok_or_else(|| mismatch(path, it.blob_id, "no such tensor"))?;
        if t.dtype != it.dtype || t.shape != it.shape {
            return Err(mismatch(path, it.blob_id, &format!("holds {} {:?}", t.dtype, t.shape)));
        }
        if data_start.checked_add(t.start) != Some(it.offset) || t.end - t.start != it.out.len() as u64 {
            return Err(mismatch(path, it.blob_id, "byte range"));
        }
    }
    items.sort_by_key(|i| (i.offset, i.out.len())); // an empty tensor first at a shared offset
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut pos = data_start;
    for it in items.iter_mut() {
        if it.offset < pos {
            return Err(mismatch(path, it.blob_id, "overlapping byte ranges"));
        }
        if it.offset > pos {
            r.seek_relative((it.offset - pos) as i64)
                .map_err(io_err("cannot read", path))?;
        }
        r.read_exact(it.out).map_err(io_err("cannot read", path))?;
        pos = it.offset + it.out.len() as u64;
    }
    verify(path, items)
}

/// Lazy read of one tensor's bytes: only its range is read (the header is not), after checking
/// that the range lies inside the file; then its checksum is verified.
pub fn read_range(path: &Path, offset: u64, sha256: Option<&str>, out: &mut [u8]) -> Result<()> {
    refuse_symlink(path, "shard")?;
    let mut f = File::open(path).map_err(io_err("cannot open", path))?;
    let flen = f.metadata().map_err(io_err("cannot stat", path))?.len();
    let end = offset.checked_add(out.len() as u64);
    if offset < 8 || end.is_none_or(|e| e > flen) {
        return Err(CoreError::bundle(format!(
            "byte range [{offset}, +{}) lies outside shard {} ({flen} bytes)",
            out.len(),
            path.display()
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(out))
        .map_err(io_err("cannot read", path))?;
    if let Some(expect) = sha256 {
        if hex(&Sha256::digest(&*out)) != expect {
            return Err(CoreError::bundle(format!(
                "checksum mismatch for {} at offset {offset}",
                path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tl-shard-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join(SHARD_DIR)).unwrap();
        d
    }

    #[test]
    fn written_shard_reads_back_and_parses() {
        let dir = tmp("write");
        let first: Vec<u8> = (0..24).collect();
        let second = vec![7u8; 5];
        let items = [
            Item {
                blob_id: 3,
                dtype: "float32",
                shape: &[2, 3],
                data: &first,
            },
            Item {
                blob_id: 9,
                dtype: "uint8",
                shape: &[5],
                data: &second,
            },
        ];
        let (sf, pl) = write_shard(&dir, 1, &items).unwrap();
        let path = dir.join(shard_relative_path(1));
        assert_eq!(fs::metadata(&path).unwrap().len(), sf.bytes);
        let (_, tensors) = safetensors::read_file(&path).unwrap();
        assert_eq!(tensors.len(), 2);
        let mut out = vec![0u8; 5];
        read_range(&path, pl[1].offset, Some(&pl[1].sha256), &mut out).unwrap();
        assert_eq!(out, second);
        assert!(read_range(&path, sf.bytes - 2, None, &mut out).is_err());
        assert!(read_range(&path, u64::MAX - 1, None, &mut out).is_err());
        let (mut o1, mut o2) = (vec![0u8; 24], vec![0u8; 5]);
        let mut ri = vec![
            ReadItem {
                blob_id: 9,
                dtype: "uint8".into(),
                shape: vec![5],
                offset: pl[1].offset,
                sha256: Some(pl[1].sha256.clone()),
                out: &mut o2,
            },
            ReadItem {
                blob_id: 3,
                dtype: "float32".into(),
                shape: vec![2, 3],
                offset: pl[0].offset,
                sha256: Some(pl[0].sha256.clone()),
                out: &mut o1,
            },
        ];
        read_shard(&path, sf.bytes, sf.data_start, &mut ri).unwrap();
        drop(ri);
        assert_eq!((o1, o2), (first, second));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn appended_shards_roll_over_and_recover() {
        let d = tmp("append");
        let mut w = ShardAppender::new(d.clone(), 10).unwrap();
        for id in 1..=3u64 {
            let data = vec![id as u8; 8];
            let sha = hex(&Sha256::digest(&data));
            w.append(id, "int64", &[1], &[("node".into(), id.to_string())], &data, sha)
                .unwrap();
        }
        let (pl, shards) = w.finish().unwrap();
        assert_eq!((pl.len(), shards.len()), (3, 3));
        assert_eq!(shard_files(&d).unwrap(), shards);
        // Cut the last shard short: recovery keeps the first two tensors.
        let last = d.join(shard_relative_path(3));
        let f = OpenOptions::new().write(true).open(&last).unwrap();
        f.set_len(shards[2].bytes - 3).unwrap();
        let rec = recover_shards(&d).unwrap();
        assert_eq!(rec.iter().map(|r| r.placement.blob_id).collect::<Vec<_>>(), [1, 2]);
        assert!(!last.exists());
        let _ = fs::remove_dir_all(&d);
    }
}
