//! The journal of a streamed capture (`journal.jsonl`): a header line (model name, run info,
//! module classes, parameters), then chunks of capture tables, each starting at a given offset
//! (a later chunk may rewrite the tail of an earlier one). Recovery reads it back into a
//! [`Capture`] checked like the metadata of a bundle. A line cut short by a crash ends the
//! journal; everything before it is used.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::MAX_JSON_BYTES;
use super::dir::{read_limited, refuse_symlink};
use super::metadata::{Capture, ModuleEntry, ModuleExit, ParamEntry, Record, StackEntry, TensorMeta};
use crate::error::{CoreError, Result};

/// What a journal holds: enough to rebuild the log of the operations recorded so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Journal {
    /// Model class name.
    pub model_name: String,
    /// Run information of the header.
    pub info: Map<String, Value>,
    /// The capture up to the last complete chunk (no outputs).
    pub capture: Capture,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    model_name: Option<Value>,
    #[serde(default)]
    info: Option<Value>,
    #[serde(default)]
    modules: Option<Value>,
    #[serde(default)]
    params: Vec<ParamEntry>,
}

#[derive(Deserialize)]
struct Chunk {
    records_from: usize,
    records: Vec<Record>,
    meta_ids: Vec<u64>,
    metas_from: usize,
    metas: Vec<TensorMeta>,
    strings_from: usize,
    strings: Vec<String>,
    stacks_from: usize,
    module_stacks: Vec<Vec<StackEntry>>,
    exits_from: usize,
    module_exits: Vec<ModuleExit>,
}

/// `table[from..] = items`, as a Python slice assignment (an offset past the end appends).
fn splice<T>(table: &mut Vec<T>, from: usize, items: Vec<T>) {
    table.truncate(from);
    table.extend(items);
}

/// Reads and checks the journal of an incomplete capture directory.
pub fn read_journal(path: &Path) -> Result<Journal> {
    refuse_symlink(path, "journal")?;
    let bytes = read_limited(path, MAX_JSON_BYTES)?;
    let invalid = |e: &dyn std::fmt::Display| CoreError::bundle(format!("invalid journal {}: {e}", path.display()));
    let mut head: Option<Head> = None;
    let mut cap = Capture::default();
    for line in bytes.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(doc) = serde_json::from_slice::<Value>(line) else {
            break; // cut short by the crash
        };
        if !doc.is_object() {
            return Err(invalid(&"a line is not an object"));
        }
        if doc.get("header").is_some() {
            head = Some(serde_json::from_value(doc).map_err(|e| invalid(&e))?);
            continue;
        }
        let c: Chunk = serde_json::from_value(doc).map_err(|e| invalid(&e))?;
        splice(&mut cap.records, c.records_from, c.records);
        splice(&mut cap.meta_ids, c.records_from, c.meta_ids);
        splice(&mut cap.metas, c.metas_from, c.metas);
        splice(&mut cap.strings, c.strings_from, c.strings);
        splice(&mut cap.module_stacks, c.stacks_from, c.module_stacks);
        splice(&mut cap.module_exits, c.exits_from, c.module_exits);
    }
    let Some(head) = head else {
        return Err(CoreError::bundle(format!(
            "nothing to recover in {}: the journal has no header",
            path.parent().unwrap_or(path).display()
        )));
    };
    let n = cap.records.len();
    cap.meta_ids.truncate(n);
    cap.module_exits.retain(|e| (e.0 as usize) < n);
    if cap.module_stacks.is_empty() {
        cap.module_stacks.push(Vec::new());
    }
    // Module passes and modules are derived from the stacks: the journal only has what ran.
    let mut passes: BTreeMap<u64, i64> = BTreeMap::new();
    for &(addr, pass) in cap.module_stacks.iter().flatten() {
        let e = passes.entry(addr).or_insert(0);
        *e = (*e).max(pass);
    }
    let classes = head.modules.as_ref().and_then(Value::as_object);
    for (&addr, &pass) in &passes {
        let address = cap.strings.get(addr as usize).map_or("?", String::as_str).to_owned();
        let class_name = match classes.and_then(|c| c.get(&address)) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "Module".to_owned(),
        };
        cap.modules.push(ModuleEntry {
            all_addresses: vec![address.clone()],
            address,
            class_name,
            num_passes: pass,
        });
        cap.module_passes
            .push((addr, u64::try_from(pass).map_err(|e| invalid(&e))?));
    }
    cap.params = head.params;
    cap.validate().map_err(|e| invalid(&e))?;
    let model_name = match head.model_name {
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => "model".to_owned(),
    };
    let info = match head.info {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Ok(Journal {
        model_name,
        info,
        capture: cap,
    })
}
