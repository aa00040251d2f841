"""Reading published pickles without letting them run code.

``pickle.load`` calls whatever global a file names, so a tampered file runs code on load.
Some published artifacts exist only as pickles (DINO-WM's ``seq_lengths.pkl``, the official
C-JEPA slot files). ``PlainUnpickler`` rebuilds only plain containers, numbers, strings and
numpy arrays / scalars / dtypes, and refuses every other global before it is imported.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO

_NUMPY_CORE = ("numpy.core", "numpy._core")  # numpy 1.x and 2.x spell the package differently

#: The globals a numpy-only pickle needs, for protocols 2 to 5.
ALLOWED_GLOBALS = frozenset(
    {(f"{core}.multiarray", name) for core in _NUMPY_CORE for name in ("_reconstruct", "scalar")}
    | {(f"{core}.numeric", "_frombuffer") for core in _NUMPY_CORE}  # protocol 5 arrays
    | {("numpy", "ndarray"), ("numpy", "dtype")}
    | {("_codecs", "encode")}  # protocol 2 writes bytes as latin-1 text re-encoded by this
)


class PlainUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers, numbers and numpy arrays/scalars;
    any other global raises ``pickle.UnpicklingError`` naming it (nothing was imported)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_plain(file: BinaryIO | str | Path) -> Any:
    """``PlainUnpickler(file).load()`` for an open binary file or a path."""
    if isinstance(file, str | Path):
        with open(file, "rb") as f:
            return PlainUnpickler(f).load()
    return PlainUnpickler(file).load()
