"""Native core of torchlens (Rust, via PyO3).

Private module: the public API wraps it. See ``docs/core-contract.md`` for the contract.
"""

from typing import final

__all__ = ["finalize", "Finalized", "RECORD_VERSION", "RECORD_FIELDS", "__version__", "build_profile"]

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
