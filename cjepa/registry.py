"""Name -> implementation registries whose entries may be ``"module:attribute"`` strings, imported
on first use (worlds in ``cjepa.worlds.registry``, evaluation stages in ``cjepa.evaluation.stage``,
so naming an entry costs nothing until it runs."""

from __future__ import annotations

import importlib
from typing import Any


def load_entry(entry: Any) -> Any:
    """``entry`` itself, or the attribute a ``"module:attribute"`` string names."""
    if not isinstance(entry, str):
        return entry
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)
