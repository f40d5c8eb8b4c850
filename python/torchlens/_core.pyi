"""Native core of torchlens (Rust, via PyO3).

Private module: the public API wraps it. See ``docs/core-contract.md`` for the contract.
"""

from os import PathLike
from typing import Any, final

from typing_extensions import Buffer

__all__ = [
    "finalize",
    "Finalized",
    "RECORD_VERSION",
    "RECORD_FIELDS",
    "__version__",
    "build_profile",
    "IO_FORMAT_VERSION",
    "TENSOR_DTYPES",
    "StreamWriter",
    "blob_write",
    "blob_read_into",
    "blob_scan",
    "bundle_load",
    "bundle_commit",
    "journal_read",
    "manifest_check",
    "refuse_symlink",
    "write_file",
    "shard_write",
    "shard_read_into",
    "shard_read_range",
    "shard_recover",
    "shard_files",
    "FastlogWriter",
    "safetensors_read",
    "backward_graph",
    "supergraph",
]

RECORD_FIELDS: tuple[str, ...]
"""Field names of one capture record, in tuple order."""

RECORD_VERSION: int
"""Bumped whenever a record field is added, removed or reordered."""

__version__: str
"""Version of the native extension (the Cargo workspace version)."""

build_profile: str
"""``"debug"`` or ``"release"``: how the extension was compiled."""

def finalize(
    strings: list[str],
    records: list[tuple[int, int, int, int, int, int, tuple[int, ...], tuple[int, ...], int]],
    module_stacks: list[list[tuple[int, int]]],
    module_exits: list[tuple[int, int, int]],
    module_passes: list[tuple[int, int]],
    outputs: list[tuple[int, int, int]],
    detect_loops: bool,
) -> Finalized:
    """Runs the core post-processing on one captured forward pass.

    Adds one output node per ``outputs`` entry, removes orphans, computes fingerprints,
    detects loops and assigns final labels, operation numbers and lookup keys. The
    conversion happens under the GIL; the heavy phases run with the GIL released.

    Args:
        strings: Interned string table referenced by the string ids below.
        records: One tuple per logged tensor in creation order, fields in
            ``RECORD_FIELDS`` order: ``(kind, func, layer_type, arg_hash, out_index,
            module_stack, params, parents, role)``. ``kind`` is 0 input, 1 buffer, 2 op;
            ``role`` is ``0xFFFFFFFF`` (or -1) for ops.
        module_stacks: Module-stack table; entry 0 must be the empty stack. Each stack is a
            list of ``(address_str_id, pass)`` pairs, outer module first.
        module_exits: ``(node, address_str_id, pass)`` per module exit, in exit order.
        module_passes: ``(address_str_id, number_of_passes)`` per module.
        outputs: ``(producer_node, role_str_id, shape_dtype_hash)`` per model output.
        detect_loops: Full loop detection when True; only the "same function and same
            parameters" rule when False.

    Returns:
        A handle with column accessors over the retained nodes.

    Raises:
        ValueError: If the batch breaks the record contract (unknown kind, id out of
            range, parent id not smaller than the node's own id, ...).
    """

@final
class Finalized:
    """Result of :func:`finalize`: columns over the retained nodes.

    Positions ``0..len`` follow creation order, synthetic output nodes last.
    """

    def __len__(self) -> int:
        """Returns the number of retained nodes."""

    def node_ids(self) -> list[int]:
        """Returns the original node id per position (outputs: ``len(records) + k``)."""

    def removed(self) -> list[int]:
        """Returns the original ids of the removed orphan nodes, ascending."""

    def labels(self) -> list[str]:
        """Returns ``layer_label`` per position (``linear_1_1:2``, ``input_1``, ``conv2d_3_7``)."""

    def labels_no_pass(self) -> list[str]:
        """Returns the label without pass per position (``linear_1_1``)."""

    def labels_short(self) -> list[str]:
        """Returns ``layer_label_short`` per position (``linear_1:2``, ``conv2d_3``)."""

    def labels_w_pass(self) -> list[str]:
        """Returns the label with pass per position (``linear_1_1:2``, ``input_1:1``)."""

    def labels_w_pass_short(self) -> list[str]:
        """Returns the short label with pass per position (``linear_1:2``)."""

    def layer_type_nums(self) -> list[int]:
        """Returns the rank of each position's layer among the layers of its type."""

    def layer_total_nums(self) -> list[int]:
        """Returns the rank among non-input, non-buffer layers (0 for inputs and buffers)."""

    def pass_nums(self) -> list[int]:
        """Returns the 1-based pass number per position."""

    def num_passes(self) -> list[int]:
        """Returns the number of passes of each position's layer."""

    def operation_nums(self) -> list[int]:
        """Returns the 1-based operation number (0 for inputs and buffers, outputs get the total)."""

    def num_operations(self) -> int:
        """Returns the number of operations (op passes)."""

    def layer_groups(self) -> list[int]:
        """Returns the index of each position's layer, in first-appearance order."""

    def parents(self) -> list[list[int]]:
        """Returns the parent positions per position, de-duplicated, in argument order."""

    def children(self) -> list[list[int]]:
        """Returns the child positions per position, in creation order."""

    def fingerprints(self) -> list[str]:
        """Returns the printable fingerprint (``operation_equivalence_type``) per position."""

    def lookup_keys(self, pos: int) -> list[str]:
        """Returns the sorted string lookup keys of one entry (integer keys excluded).

        Args:
            pos: Position of the entry.

        Returns:
            The keys, sorted and de-duplicated.

        Raises:
            IndexError: If ``pos`` is not in ``range(len(self))``.
        """

    def lookup(self, key: str) -> int | None:
        """Resolves an exact string lookup key.

        Args:
            key: The key, e.g. ``"conv2d_3_7"`` or ``"features.6:1"``.

        Returns:
            The position owning the key (the first entry producing it), or None.
        """

    def lookup_ci(self, key: str) -> int | None:
        """Resolves a lookup key ignoring case.

        Args:
            key: The key, in any case.

        Returns:
            The first position owning a key equal to ``key`` ignoring case, or None.
        """

    def find_substring(self, s: str) -> list[tuple[str, int]]:
        """Finds the keys containing a substring (case-sensitive).

        Args:
            s: The substring.

        Returns:
            ``(key, position)`` pairs in key order.
        """

    def find_substring_ci(self, s: str) -> list[tuple[str, int]]:
        """Finds the keys containing a substring, ignoring case.

        Args:
            s: The substring.

        Returns:
            ``(key, position)`` pairs in key order.
        """

    def timings(self) -> dict[str, float]:
        """Returns the seconds spent per core phase (``graph``, ``fingerprints``, ``loops``,
        ``labels``, ``total``)."""

# ---------------------------------------------------------------------------- bundles

IO_FORMAT_VERSION: int
"""Bundle layout version this extension writes and the newest it reads (see ``docs/bundle-format.md``)."""

TENSOR_DTYPES: tuple[str, ...]
"""Torch names of the dtypes a tensor file (bundle blob or fastlog payload) can hold: the core's
one dtype table. Every one is standard safetensors except ``complex128`` (see ``docs/bundle-format.md``).

Errors of the functions below are ``torchlens._errors.TorchLensIOError`` (defined in Python)."""

_Path = str | PathLike[str]

def blob_write(
    path: _Path, dtype: str, shape: list[int], metadata: list[tuple[str, str]], data: Buffer
) -> tuple[int, str]:
    """Writes one single-tensor safetensors file (via ``<path>.partial`` and a rename).

    Args:
        path: Destination file.
        dtype: Torch dtype name (``"float32"``).
        shape: Tensor shape.
        metadata: String pairs stored in the header's ``__metadata__``.
        data: C-contiguous bytes of the tensor (e.g. a uint8 numpy view); read without the GIL.

    Returns:
        ``(file_bytes, sha256_hex)``.

    Raises:
        TorchLensIOError: Unsupported dtype, size mismatch or an I/O error.
    """

def blob_read_into(path: _Path, dtype: str, shape: list[int], sha256: str | None, out: Buffer) -> None:
    """Reads a blob's data into a writable buffer of exactly its size, without the GIL.

    Args:
        path: The blob file.
        dtype: Expected dtype name.
        shape: Expected shape.
        sha256: Expected SHA-256 of the whole file, or None to skip the check.
        out: Writable C-contiguous destination.

    Raises:
        TorchLensIOError: Truncated file, bad header, dtype/shape mismatch or checksum mismatch.
    """

def blob_scan(path: _Path) -> tuple[str, list[int], list[tuple[str, str]], int, str]:
    """Reads a blob's header and checksums the file: ``(dtype, shape, metadata, file_bytes, sha256)``.

    Raises:
        TorchLensIOError: Truncated or malformed file.
    """

def bundle_load(
    path: _Path, torch_version: str
) -> tuple[dict[str, Any], dict[str, Any], list[str], list[tuple[str, str]]]:
    """Opens a bundle for loading, without reading tensor data.

    Checks symlinks, the manifest schema, the presence and size of every blob and of
    ``metadata.json``, the metadata checksum and schema (every index cross-checked), and the
    version policy against ``torch_version`` and this extension's version.

    Returns:
        ``(manifest, metadata, unexpected_files_in_blobs, notices)``: ``manifest`` has
        ``io_format_version``, ``torchlens_version``, ``torch_version``, ``n_layers`` and
        ``tensors`` (dicts with ``blob_id``, ``kind``, ``label``, ``relative_path``, ``dtype``,
        ``shape``, ``device_at_save``, ``bytes`` (format 1, else None), ``shard``, ``offset``,
        ``length`` (format 2, else None), ``sha256``) and ``shards`` (format 2: dicts with
        ``relative_path``, ``bytes``, ``data_start``; empty in format 1); ``metadata`` has ``model_name``,
        ``info``, ``capture`` (the ``CaptureData`` fields as plain lists and tuples), ``extras``
        (or None), ``activations`` and ``transformed`` (``(node, blob_id)`` pairs); ``notices``
        are ``("warning" | "deprecation", message)`` pairs to show.

    Raises:
        TorchLensIOError: Naming the first problem found.
    """

def journal_read(path: _Path) -> dict[str, Any]:
    """Reads the journal of an interrupted streamed capture.

    Returns:
        ``{"model_name", "info", "capture"}``, ``capture`` shaped like ``bundle_load``'s.

    Raises:
        TorchLensIOError: Symlinked, unreadable or invalid journal, or one without a header.
    """

def bundle_commit(tmp: _Path, target: _Path, manifest: bytes) -> None:
    """Validates ``manifest``, writes it last into ``tmp`` (fsync) and renames ``tmp`` to ``target``.

    Raises:
        TorchLensIOError: Invalid manifest, existing or symlinked target, or an I/O error.
    """

def manifest_check(data: bytes) -> str:
    """Validates a manifest document (the loader's reader) and returns it as text.

    Raises:
        TorchLensIOError: Naming the first schema problem.
    """

def refuse_symlink(path: _Path, what: str) -> None:
    """Raises TorchLensIOError when ``path`` is a symbolic link (``what`` names it in the message)."""

def write_file(path: _Path, data: bytes) -> tuple[int, str]:
    """Writes a small file durably (``.partial``, fsync, rename); returns ``(bytes, sha256_hex)``."""

def shard_write(
    dir: _Path, index: int, items: list[tuple[int, str, list[int], Buffer]]
) -> tuple[int, int, list[tuple[int, int, int, str]]]:
    """Writes ``<dir>/shards/<index:05>.safetensors`` holding ``(blob_id, dtype, shape, data)`` items
    back to back (exact header), checksumming on other threads, without the GIL.

    Returns:
        ``(file_bytes, data_start, [(blob_id, offset, length, sha256_of_the_bytes)])``.

    Raises:
        TorchLensIOError: Unsupported dtype, size mismatch, duplicate blob id or an I/O error.
    """

def shard_read_into(
    path: _Path, bytes: int, data_start: int, items: list[tuple[int, str, list[int], int, str | None, Buffer]]
) -> None:
    """Eagerly reads tensors of one shard in one sequential pass into distinct writable buffers.

    ``items`` are ``(blob_id, dtype, shape, offset, sha256, out)``. The file size, the header
    (each tensor's name, dtype, shape and range) and every checksum are checked.

    Raises:
        TorchLensIOError: Truncated or symlinked shard, header mismatch, overlapping ranges or
            ``Checksum mismatch for blob_id=N``.
    """

def shard_read_range(path: _Path, offset: int, sha256: str | None, out: Buffer) -> None:
    """Reads one tensor's byte range (``len(out)`` bytes at ``offset``) of a shard, without its header.

    Raises:
        TorchLensIOError: Range outside the file, symlinked shard or checksum mismatch.
    """

def shard_recover(
    dir: _Path,
) -> list[tuple[int, int, int, int, str, str, list[int], list[tuple[str, str]]]]:
    """Recovers the shards of an interrupted streamed capture: keeps each shard's journaled tensors
    whose bytes are complete and intact, truncates the shard after them and writes its header.

    Returns:
        ``[(blob_id, shard, offset, length, sha256, dtype, shape, metadata)]`` by blob id.
    """

def shard_files(dir: _Path) -> list[tuple[int, int, int]]:
    """``[(index, file_bytes, data_start)]`` of the shard files of a bundle directory, by index."""

@final
class StreamWriter:
    """Writes tensors on background threads while capture continues: to ``<path>/blobs/`` (one
    file each, io format 1) or appended to shard files ``<path>/shards/`` (format 2)."""

    def __new__(
        cls, path: _Path, max_inflight_bytes: int = ..., threads: int = ..., shard_bytes: int | None = ...
    ) -> StreamWriter:
        """Starts ``threads`` writer threads; at most ``max_inflight_bytes`` of queued data (one job
        always fits). With ``shard_bytes``, tensors go to shards rolled over after that many data
        bytes, each journaled in ``<path>/tensors.jsonl`` once written."""

    def submit(self, blob_id: int, dtype: str, shape: list[int], metadata: list[tuple[str, str]], data: Buffer) -> None:
        """Copies ``data`` and queues it as blob ``blob_id``; blocks while the queue is full.

        Raises:
            TorchLensIOError: An earlier write failed, or the writer is finished.
        """

    def append(self, name: str, data: bytes) -> None:
        """Queues an append of ``data`` to the file ``name`` of the directory, after earlier jobs."""

    def finish(self) -> list[tuple[int, int, str, int, int]]:
        """Waits for every queued write; returns ``[(blob_id, bytes, sha256, shard, offset)]`` sorted
        by blob id: a blob file's size and checksum (``shard`` 0) or, in shards, the tensor's data
        length, its bytes' checksum, shard index and offset (the latest of each blob id).

        Raises:
            TorchLensIOError: If any write failed, or the writer is already finished.
        """

    def close(self) -> None:
        """Stops the thread after the queued writes, ignoring their results."""

@final
class FastlogWriter:
    """Streams fastlog records (payload files + ``fastlog_index.jsonl`` lines) into one directory."""

    def __new__(cls, root: _Path, max_queued: int = ...) -> FastlogWriter:
        """Opens the index for appending and starts the writer thread (at most ``max_queued`` waiting jobs)."""

    def write(
        self,
        relative_path: str,
        tensors: list[tuple[str, str, list[int]]],
        metadata: list[tuple[str, str]],
        chunks: list[Buffer],
        index_line: str,
    ) -> None:
        """Copies ``chunks`` and queues one record; the thread writes the safetensors file (header
        encoded by the core from ``tensors``, ``(name, dtype, shape)`` in data order, and the string
        ``metadata``), then the line with ``@SHA256@`` replaced by the file's digest. Blocks while
        the queue is full. An empty ``relative_path`` queues the line alone.

        Raises:
            TorchLensIOError: Invalid ``relative_path``, unsupported dtype, a buffer of the wrong
                size, an earlier write failed, or the writer is finished.
        """

    def finish(self) -> int:
        """Waits for every queued record and stops the thread; returns the number written (0 if already finished).

        Raises:
            TorchLensIOError: If any write failed.
        """

def safetensors_read(path: _Path) -> tuple[list[tuple[str, str]], list[tuple[str, str, list[int], bytearray]]]:
    """Reads every tensor of a safetensors file: ``(metadata, [(name, dtype, shape, data)])`` in offset order.

    Raises:
        TorchLensIOError: Truncated or malformed file, or an unsupported dtype.
    """

def backward_graph(
    class_names: list[str],
    nodes: list[tuple[int, int, list[int]]],
    known: list[int],
    logged: int,
    forward: list[tuple[int, int, int, int]],
) -> list[tuple[int, str, str, int, int, bool, int | None, list[int]]]:
    """Matches the grad_fns of one walk from a loss to the forward layers and labels the new ones.

    Args:
        class_names: Interned class names of the grad_fns.
        nodes: ``(id, class_index, next_ids)`` per grad_fn, in breadth-first discovery order
            from ``loss.grad_fn`` (``None`` entries of ``next_functions`` left out).
        known: Ids of the walked grad_fns that earlier calls logged (skipped).
        logged: How many grad_fns earlier calls logged in all (the new ones are numbered after them).
        forward: ``(grad_fn_id, position, layer_type_num, layer_total_num)`` per forward layer
            whose output had a grad_fn.

    Returns:
        One ``(grad_fn_id, label, grad_fn_type, type_num, total_num, is_intervening, position,
        next_ids)`` per new grad_fn, in discovery order; ``position`` is None for intervening ones.

    Raises:
        ValueError: A class index out of range, an id listed twice, a next id not discovered, or
            more grad_fns than 2**32 - 1.
    """

def supergraph(
    fingerprints: list[list[str]],
    labels: list[list[str]],
    trace_names: list[str],
) -> tuple[list[tuple[str, int, int, list[int]]], list[list[int]]]:
    """Matches the layer passes of several traces by fingerprint plus occurrence index.

    The k-th pass with fingerprint F in one trace is the same node as the k-th pass with F in
    every other trace. Nodes are ordered by first appearance; a node's name is its label in the
    first trace that has it (``"label@trace_name"`` when another node already took that label).

    Args:
        fingerprints: Per trace, the fingerprint of each pass in execution order.
        labels: Per trace, the label of each pass (same lengths as ``fingerprints``).
        trace_names: One name per trace.

    Returns:
        ``(nodes, assignment)``: one ``(name, first_trace, first_pos, traces)`` per union node,
        and per trace the node index of each of its passes.

    Raises:
        ValueError: The lists differ in length.
    """
