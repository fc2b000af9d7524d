"""Reading the official CIFAR / downsampled-ImageNet pickle batches without trusting arbitrary pickles.

These formats are Python pickles, which can run code on load. The restricted unpickler only lets through
what a numpy array needs, so a tampered or wrong file fails with a clear error instead of executing.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from hnas.data.errors import DataError

_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
})


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data batch")
        return super().find_class(module, name)


def load_batch(path: Path) -> dict[str, Any]:
    """One pickle batch as a dict with ``str`` keys (Python-2 pickles give bytes keys; both work)."""
    if not path.is_file():
        raise DataError(f"missing data file {path}")
    try:
        with path.open("rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as e:
        raise DataError(f"{path} is not a valid pickled data batch: {e}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a dict with 'data' and labels")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
