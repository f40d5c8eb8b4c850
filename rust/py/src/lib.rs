//! `torchlens._core`: the thin `PyO3` layer over `torchlens-core`.
//!
//! Python hands over one capture batch per forward pass; [`finalize`](_core::finalize) converts
//! it under the interpreter lock in one loop, then releases the lock for the core pipeline and
//! returns a frozen [`Finalized`](_core::PyFinalized) handle with column accessors.

mod backward;
mod bundle;
mod byteview;
mod convert;
mod errors;
mod fastlog;
mod schema;
mod supergraph;

#[pyo3::pymodule]
mod _core {
    use pyo3::exceptions::PyIndexError;
    use pyo3::prelude::*;
    use pyo3::types::{PyDict, PyList, PyTuple};
    use torchlens_core::{Adjacency, Finalized, LabelForm, Options};

    use crate::convert::batch_from_py;
    use crate::errors::CoreErrorWrapper;

    #[pymodule_export]
    use crate::backward::backward_graph;

    #[pymodule_export]
    use crate::bundle::{
        PyStreamWriter, blob_read_into, blob_scan, blob_write, bundle_commit, bundle_load, journal_read,
        manifest_check, refuse_symlink, shard_files, shard_read_into, shard_read_range, shard_recover, shard_write,
        write_file,
    };

    #[pymodule_export]
    use crate::supergraph::supergraph;

    #[pymodule_export]
    use crate::fastlog::{PyFastlogWriter, safetensors_read};

    #[pymodule_export]
    const RECORD_VERSION: u32 = torchlens_core::RECORD_VERSION;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("RECORD_FIELDS", PyTuple::new(m.py(), torchlens_core::RECORD_FIELDS)?)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("IO_FORMAT_VERSION", torchlens_core::bundle::IO_FORMAT_VERSION)?;
        let dtypes = torchlens_core::bundle::safetensors::DTYPES.iter().map(|d| d.torch);
        m.add("TENSOR_DTYPES", PyTuple::new(m.py(), dtypes)?)?;
        m.add(
            "build_profile",
            if cfg!(debug_assertions) { "debug" } else { "release" },
        )?;
        Ok(())
    }

    /// Runs the core post-processing on one capture batch (see `docs/core-contract.md`).
    #[pyfunction]
    #[pyo3(signature = (strings, records, module_stacks, module_exits, module_passes, outputs, detect_loops))]
    #[allow(clippy::too_many_arguments)]
    fn finalize(
        py: Python<'_>,
        strings: &Bound<'_, PyList>,
        records: &Bound<'_, PyList>,
        module_stacks: &Bound<'_, PyList>,
        module_exits: &Bound<'_, PyList>,
        module_passes: &Bound<'_, PyList>,
        outputs: &Bound<'_, PyList>,
        detect_loops: bool,
    ) -> PyResult<PyFinalized> {
        let batch = batch_from_py(strings, records, module_stacks, module_exits, module_passes, outputs)?;
        let inner = py
            .detach(|| torchlens_core::finalize(&batch, &Options { detect_loops }))
            .map_err(CoreErrorWrapper::from)?;
        Ok(PyFinalized { inner })
    }

    /// One Python list of ints per node, without intermediate `Vec`s.
    fn adjacency_list<'py>(py: Python<'py>, adj: &Adjacency) -> PyResult<Bound<'py, PyList>> {
        let lists = (0..adj.len())
            .map(|i| PyList::new(py, adj.get(i)))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, lists)
    }

    /// Handle on the result of `finalize`: columns over the retained nodes.
    #[pyclass(module = "torchlens._core", frozen, name = "Finalized")]
    pub struct PyFinalized {
        inner: Finalized,
    }

    #[pymethods]
    impl PyFinalized {
        fn __len__(&self) -> usize {
            self.inner.len()
        }

        fn __repr__(&self) -> String {
            format!(
                "<Finalized: {} entries, {} operations>",
                self.inner.len(),
                self.inner.num_operations()
            )
        }

        fn node_ids(&self) -> Vec<u32> {
            self.inner.node_ids().to_vec()
        }

        fn removed(&self) -> Vec<u32> {
            self.inner.removed().to_vec()
        }

        fn labels(&self) -> Vec<String> {
            self.inner.labels()
        }

        fn labels_no_pass(&self) -> Vec<String> {
            self.inner.label_column(LabelForm::NoPass)
        }

        fn labels_short(&self) -> Vec<String> {
            self.inner.labels_short()
        }

        fn labels_w_pass(&self) -> Vec<String> {
            self.inner.label_column(LabelForm::WithPass)
        }

        fn labels_w_pass_short(&self) -> Vec<String> {
            self.inner.label_column(LabelForm::ShortWithPass)
        }

        fn layer_type_nums(&self) -> Vec<u32> {
            self.inner.layer_type_nums().to_vec()
        }

        fn layer_total_nums(&self) -> Vec<u32> {
            self.inner.layer_total_nums().to_vec()
        }

        fn pass_nums(&self) -> Vec<u32> {
            self.inner.pass_nums().to_vec()
        }

        fn num_passes(&self) -> Vec<u32> {
            self.inner.num_passes().to_vec()
        }

        fn operation_nums(&self) -> Vec<u32> {
            self.inner.operation_nums().to_vec()
        }

        fn num_operations(&self) -> u32 {
            self.inner.num_operations()
        }

        fn layer_groups(&self) -> Vec<u32> {
            self.inner.layer_groups().to_vec()
        }

        fn parents<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
            adjacency_list(py, self.inner.parents())
        }

        fn children<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
            adjacency_list(py, self.inner.children())
        }

        fn fingerprints(&self) -> Vec<String> {
            self.inner.fingerprints()
        }

        fn lookup_keys(&self, pos: isize) -> PyResult<Vec<String>> {
            usize::try_from(pos)
                .ok()
                .and_then(|p| self.inner.lookup_keys(p).ok())
                .ok_or_else(|| {
                    PyIndexError::new_err(format!("position {pos} out of range ({} entries)", self.inner.len()))
                })
        }

        fn lookup(&self, py: Python<'_>, key: &str) -> Option<u32> {
            py.detach(|| self.inner.lookup(key))
        }

        fn lookup_ci(&self, py: Python<'_>, key: &str) -> Option<u32> {
            py.detach(|| self.inner.lookup_ci(key))
        }

        fn find_substring(&self, py: Python<'_>, s: &str) -> Vec<(String, u32)> {
            py.detach(|| self.inner.find_substring(s))
        }

        fn find_substring_ci(&self, py: Python<'_>, s: &str) -> Vec<(String, u32)> {
            py.detach(|| self.inner.find_substring_ci(s))
        }

        fn timings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
            let dict = PyDict::new(py);
            for &(name, secs) in self.inner.timings() {
                dict.set_item(name, secs)?;
            }
            Ok(dict)
        }
    }
}
