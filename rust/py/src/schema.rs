//! Validated bundle documents (manifest, metadata, journal) as plain Python data: dicts, lists,
//! tuples, ints, floats and strings, shaped like the fields of `CaptureData`. The core has
//! already checked every type and index, so nothing here can fail on hostile input.

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use serde_json::Value;
use torchlens_core::bundle::manifest::{Manifest, Notice, TensorEntry};
use torchlens_core::bundle::metadata::{Capture, Extras, FuncTimes, Metadata};

type Obj<'py> = Bound<'py, PyAny>;

/// Any JSON value as the object `json.loads` would return.
pub fn json<'py>(py: Python<'py>, v: &Value) -> PyResult<Obj<'py>> {
    match v {
        Value::Null => Ok(py.None().into_bound(py)),
        Value::Bool(b) => b.into_bound_py_any(py),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_bound_py_any(py),
            (None, Some(u)) => u.into_bound_py_any(py),
            _ => n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py),
        },
        Value::String(s) => s.into_bound_py_any(py),
        Value::Array(a) => list(py, a.iter().map(|x| json(py, x))),
        Value::Object(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, json(py, x)?)?;
            }
            Ok(d.into_any())
        }
    }
}

fn list<'py>(py: Python<'py>, items: impl Iterator<Item = PyResult<Obj<'py>>>) -> PyResult<Obj<'py>> {
    Ok(PyList::new(py, items.collect::<PyResult<Vec<_>>>()?)?.into_any())
}

fn tuple<'py, T: IntoPyObject<'py> + Copy>(py: Python<'py>, items: &[T]) -> PyResult<Obj<'py>> {
    Ok(PyTuple::new(py, items.iter().copied())?.into_any())
}

/// Records become tuples with tuple `params` / `parents`, as the capture session builds them.
fn capture<'py>(py: Python<'py>, c: &Capture) -> PyResult<Obj<'py>> {
    let d = PyDict::new(py);
    d.set_item("strings", &c.strings)?;
    let records = c
        .records
        .iter()
        .map(|r| (r.0, r.1, r.2, r.3, r.4, r.5, tuple(py, &r.6)?, tuple(py, &r.7)?, r.8).into_bound_py_any(py));
    d.set_item("records", list(py, records)?)?;
    d.set_item("meta_ids", &c.meta_ids)?;
    let metas = c
        .metas
        .iter()
        .map(|(shape, dtype, desc)| (tuple(py, shape)?, dtype, desc).into_bound_py_any(py));
    d.set_item("metas", list(py, metas)?)?;
    d.set_item("module_stacks", &c.module_stacks)?;
    d.set_item("module_exits", &c.module_exits)?;
    d.set_item("module_passes", &c.module_passes)?;
    d.set_item("outputs", &c.outputs)?;
    let modules = c
        .modules
        .iter()
        .map(|m| (&m.address, &m.class_name, m.num_passes, &m.all_addresses).into_bound_py_any(py));
    d.set_item("modules", list(py, modules)?)?;
    let params = c.params.iter().map(|p| {
        (
            &p.address,
            tuple(py, &p.shape)?,
            &p.dtype,
            p.numel,
            p.nbytes,
            p.requires_grad,
        )
            .into_bound_py_any(py)
    });
    d.set_item("params", list(py, params)?)?;
    Ok(d.into_any())
}

fn extras<'py>(py: Python<'py>, e: &Extras) -> PyResult<Obj<'py>> {
    let d = PyDict::new(py);
    match &e.func_times {
        Some(FuncTimes::List(v)) => d.set_item("func_times", v)?,
        Some(FuncTimes::ByNode(v)) => d.set_item(
            "func_times",
            v.iter().copied().collect::<std::collections::HashMap<_, _>>(),
        )?,
        None => d.set_item("func_times", py.None())?,
    }
    match &e.toks {
        Some(t) => d.set_item("toks", list(py, t.iter().map(|x| json(py, x)))?)?,
        None => d.set_item("toks", py.None())?,
    }
    d.set_item("site_ids", &e.site_ids)?;
    d.set_item("codes", &e.codes)?;
    d.set_item("sites", &e.sites)?;
    d.set_item("stack_sites", &e.stack_sites)?;
    d.set_item("stack_parent", &e.stack_parent)?;
    d.set_item("caller_site", e.caller_site)?;
    Ok(d.into_any())
}

/// `{"model_name", "info", "capture", "extras", "activations", "transformed"}`.
pub fn metadata<'py>(py: Python<'py>, m: &Metadata) -> PyResult<Obj<'py>> {
    let d = PyDict::new(py);
    d.set_item("model_name", &m.model_name)?;
    d.set_item("info", json(py, &Value::Object(m.info.clone()))?)?;
    d.set_item("capture", capture(py, &m.capture)?)?;
    match &m.extras {
        Some(e) => d.set_item("extras", extras(py, e)?)?,
        None => d.set_item("extras", py.None())?,
    }
    d.set_item("activations", &m.activations)?;
    d.set_item("transformed", &m.transformed)?;
    Ok(d.into_any())
}

/// `{"model_name", "info", "capture"}` of a recovered journal.
pub fn journal<'py>(py: Python<'py>, j: &torchlens_core::bundle::journal::Journal) -> PyResult<Obj<'py>> {
    let d = PyDict::new(py);
    d.set_item("model_name", &j.model_name)?;
    d.set_item("info", json(py, &Value::Object(j.info.clone()))?)?;
    d.set_item("capture", capture(py, &j.capture)?)?;
    Ok(d.into_any())
}

fn tensor<'py>(py: Python<'py>, t: &TensorEntry) -> PyResult<Obj<'py>> {
    let d = PyDict::new(py);
    d.set_item("blob_id", t.blob_id)?;
    d.set_item("kind", &t.kind)?;
    d.set_item("label", &t.label)?;
    d.set_item("relative_path", &t.relative_path)?;
    d.set_item("dtype", &t.dtype)?;
    d.set_item("shape", tuple(py, &t.shape)?)?;
    d.set_item("device_at_save", &t.device_at_save)?;
    d.set_item("bytes", t.bytes)?;
    d.set_item("shard", t.shard)?;
    d.set_item("offset", t.offset)?;
    d.set_item("length", t.length)?;
    d.set_item("sha256", &t.sha256)?;
    Ok(d.into_any())
}

/// `{"io_format_version", "torchlens_version", "torch_version", "n_layers", "tensors", "shards"}`.
pub fn manifest<'py>(py: Python<'py>, m: &Manifest) -> PyResult<Obj<'py>> {
    let d = PyDict::new(py);
    d.set_item("io_format_version", m.io_format_version)?;
    d.set_item("torchlens_version", &m.torchlens_version)?;
    d.set_item("torch_version", &m.torch_version)?;
    d.set_item("n_layers", m.n_layers)?;
    d.set_item("tensors", list(py, m.tensors.iter().map(|t| tensor(py, t)))?)?;
    let shards = m.shards.iter().map(|s| {
        let e = PyDict::new(py);
        e.set_item("relative_path", &s.relative_path)?;
        e.set_item("bytes", s.bytes)?;
        e.set_item("data_start", s.data_start)?;
        Ok(e.into_any())
    });
    d.set_item("shards", list(py, shards)?)?;
    Ok(d.into_any())
}

/// `("warning" | "deprecation", message)`.
pub fn notice(n: &Notice) -> (&'static str, String) {
    match n {
        Notice::Warning(m) => ("warning", m.clone()),
        Notice::Deprecation(m) => ("deprecation", m.clone()),
    }
}
