//! Conversion of the Python-side capture batch into owned core structs, in one pass under the
//! interpreter lock.

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use torchlens_core::{CaptureBatch, NO_STR, NodeKind, OpRecord, RECORD_FIELDS};

use crate::errors::invalid;

/// Reads an int that must fit a `u32` id.
fn id(obj: Borrowed<'_, '_, PyAny>, what: &dyn Fn() -> String) -> PyResult<u32> {
    let value: i64 = obj
        .extract()
        .map_err(|_| invalid(format!("{}: expected an int", what())))?;
    u32::try_from(value).map_err(|_| invalid(format!("{}: {value} is not a valid id", what())))
}

/// Reads a tuple of ids (`params`, `parents`).
fn ids(obj: Borrowed<'_, '_, PyAny>, what: &dyn Fn() -> String) -> PyResult<Vec<u32>> {
    let tuple = obj
        .cast::<PyTuple>()
        .map_err(|_| invalid(format!("{}: expected a tuple of ints", what())))?;
    let mut out = Vec::with_capacity(tuple.len());
    for i in 0..tuple.len() {
        out.push(id(tuple.get_borrowed_item(i)?, what)?);
    }
    Ok(out)
}

/// Converts one record tuple (fields in [`RECORD_FIELDS`] order).
fn record(i: usize, item: &Bound<'_, PyAny>) -> PyResult<OpRecord> {
    let tuple = item
        .cast::<PyTuple>()
        .map_err(|_| invalid(format!("record {i}: expected a tuple of {} items", RECORD_FIELDS.len())))?;
    if tuple.len() != RECORD_FIELDS.len() {
        return Err(invalid(format!(
            "record {i}: expected {} items, got {}",
            RECORD_FIELDS.len(),
            tuple.len()
        )));
    }
    let field = |k: usize| tuple.get_borrowed_item(k);
    let what = |k: usize| move || format!("record {i}, field {}", RECORD_FIELDS[k]);
    let kind_code: i64 = field(0)?
        .extract()
        .map_err(|_| invalid(format!("{}: expected an int", what(0)())))?;
    let kind =
        NodeKind::from_code(kind_code).ok_or_else(|| invalid(format!("{}: unknown kind {kind_code}", what(0)())))?;
    let arg_hash_obj = field(3)?;
    let arg_hash = match arg_hash_obj.extract::<u64>() {
        Ok(h) => h,
        // Python's hash() is signed; only equality matters, so reinterpret the bits.
        Err(_) => arg_hash_obj
            .extract::<i64>()
            .map_err(|_| invalid(format!("{}: expected an int", what(3)())))? as u64,
    };
    let out_index: i64 = field(4)?
        .extract()
        .map_err(|_| invalid(format!("{}: expected an int", what(4)())))?;
    let out_index =
        i32::try_from(out_index).map_err(|_| invalid(format!("{}: {out_index} out of range", what(4)())))?;
    let role: i64 = field(8)?
        .extract()
        .map_err(|_| invalid(format!("{}: expected an int", what(8)())))?;
    let role = if role == i64::from(NO_STR) || role == -1 {
        NO_STR
    } else {
        u32::try_from(role).map_err(|_| invalid(format!("{}: {role} is not a valid id", what(8)())))?
    };
    Ok(OpRecord {
        kind,
        func: id(field(1)?, &what(1))?,
        layer_type: id(field(2)?, &what(2))?,
        arg_hash,
        out_index,
        module_stack: id(field(5)?, &what(5))?,
        params: ids(field(6)?, &what(6))?,
        parents: ids(field(7)?, &what(7))?,
        role,
    })
}

/// Reads a list of fixed-size int tuples as `u32`s (negative values are rejected).
fn table<const N: usize>(name: &str, list: &Bound<'_, PyList>) -> PyResult<Vec<[u32; N]>> {
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let what = || format!("{name}[{i}]");
        let tuple = item
            .cast::<PyTuple>()
            .map_err(|_| invalid(format!("{}: expected a tuple of {N} ints", what())))?;
        if tuple.len() != N {
            return Err(invalid(format!("{}: expected {N} items, got {}", what(), tuple.len())));
        }
        let mut row = [0u32; N];
        for (k, slot) in row.iter_mut().enumerate() {
            *slot = id(tuple.get_borrowed_item(k)?, &what)?;
        }
        out.push(row);
    }
    Ok(out)
}

/// Builds the core's [`CaptureBatch`] from the arguments of `_core.finalize`.
pub fn batch_from_py(
    strings: &Bound<'_, PyList>,
    records: &Bound<'_, PyList>,
    module_stacks: &Bound<'_, PyList>,
    module_exits: &Bound<'_, PyList>,
    module_passes: &Bound<'_, PyList>,
    outputs: &Bound<'_, PyList>,
) -> PyResult<CaptureBatch> {
    let strings = strings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.extract::<String>()
                .map_err(|_| invalid(format!("strings[{i}]: expected a str")))
        })
        .collect::<PyResult<Vec<String>>>()?;
    let records = records
        .iter()
        .enumerate()
        .map(|(i, item)| record(i, &item))
        .collect::<PyResult<Vec<_>>>()?;
    let mut stacks = Vec::with_capacity(module_stacks.len());
    for (i, stack) in module_stacks.iter().enumerate() {
        let list = stack
            .cast::<PyList>()
            .map_err(|_| invalid(format!("module_stacks[{i}]: expected a list")))?;
        stacks.push(
            table::<2>(&format!("module_stacks[{i}]"), list)?
                .into_iter()
                .map(|[a, p]| (a, p))
                .collect(),
        );
    }
    let module_exits = table::<3>("module_exits", module_exits)?
        .into_iter()
        .map(|[n, a, p]| (n, a, p))
        .collect();
    let module_passes = table::<2>("module_passes", module_passes)?
        .into_iter()
        .map(|[a, n]| (a, n))
        .collect();
    let mut specs = Vec::with_capacity(outputs.len());
    for (i, item) in outputs.iter().enumerate() {
        let what = || format!("outputs[{i}]");
        let tuple = item
            .cast::<PyTuple>()
            .map_err(|_| invalid(format!("{}: expected a tuple of 3 ints", what())))?;
        if tuple.len() != 3 {
            return Err(invalid(format!("{}: expected 3 items, got {}", what(), tuple.len())));
        }
        let hash_obj = tuple.get_borrowed_item(2)?;
        let hash = match hash_obj.extract::<u64>() {
            Ok(h) => h,
            Err(_) => hash_obj
                .extract::<i64>()
                .map_err(|_| invalid(format!("{}: expected an int hash", what())))? as u64,
        };
        specs.push((
            id(tuple.get_borrowed_item(0)?, &what)?,
            id(tuple.get_borrowed_item(1)?, &what)?,
            hash,
        ));
    }
    Ok(CaptureBatch {
        strings,
        records,
        module_stacks: stacks,
        module_exits,
        module_passes,
        outputs: specs,
    })
}
