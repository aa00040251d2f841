"""The tensors of a pickled-object checkpoint, read without importing or running its code.

The official C-JEPA release ships ``*_epoch_30_object.ckpt`` files: ``torch.save(pl_module)``
of the whole Lightning world model (``ModelObjectCallBack`` in the official training scripts),
and Lightning checkpoints may carry config objects beside their ``state_dict``. A normal
``torch.load`` imports the official code and calls whatever the file names;
``torch.load(weights_only=True)`` refuses such files.

:func:`load_inert` still reads them with ``weights_only=True``: every class or function the file
names (``torch.serialization.get_unsafe_globals_in_checkpoint``) is allow-listed as an inert
:class:`Stub`, a fresh class that accepts any arguments and only stores the state the pickle
hands it, so no module the file names is imported and nothing it names is called. Tensors are
rebuilt by torch's own weights-only rules. :func:`module_state` then walks the stubs the way
``nn.Module.state_dict`` walks modules (``_parameters``, persistent ``_buffers``,
``_modules``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class Stub:
    """Stands in for a class or function a checkpoint names (``stub_name``): any arguments are
    accepted and kept, pickled state lands in ``__dict__``, items and appends in
    ``stub_items``; no behaviour of the named object exists here."""

    stub_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__.setdefault("stub_args", args)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slot state)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["stub_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:  # a dict subclass's SETITEMS
        self.__dict__.setdefault("stub_items", {})[key] = value

    def append(self, value: Any) -> None:  # a list subclass's APPENDS
        self.__dict__.setdefault("stub_items", []).append(value)

    def extend(self, values: Any) -> None:
        for v in values:
            self.append(v)

    def __repr__(self) -> str:
        return f"<stub {self.stub_name}>"


def _stub(full_name: str) -> type[Stub]:
    name = full_name.rsplit(".", 1)[-1]
    return type(name, (Stub,), {"stub_name": full_name, "__module__": __name__})


def named_globals(path: str | Path) -> list[str]:
    """The globals a checkpoint names beyond torch's weights-only allow-list."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as err:  # torch raises several types for non-zip or corrupt files
        raise ValueError(
            f"cannot list the globals of {path}: not a readable torch zip checkpoint "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})"
        ) from err


def load_inert(path: str | Path) -> Any:
    """``cjepa.train.load_checkpoint`` (``torch.load(weights_only=True)``) of ``path`` with
    every named global an inert stub; a global of a module torch's weights-only unpickler
    blocks outright (``sys``, ``os``, ...) is refused first, naming it."""
    from torch._weights_only_unpickler import _blocklisted_modules

    from cjepa.train import load_checkpoint

    names = named_globals(path)
    blocked = [n for n in names if n.split(".")[0] in _blocklisted_modules]
    if blocked:
        raise ValueError(
            f"refused {path}: it names {blocked[0]}, of a module torch never loads from a "
            "checkpoint (nothing from it was run)"
        )
    with torch.serialization.safe_globals([(_stub(name), name) for name in names]):
        return load_checkpoint(path)


def is_module(obj: Any) -> bool:
    """Whether ``obj`` is a stub (or module) carrying an ``nn.Module``'s state."""
    return isinstance(getattr(obj, "__dict__", None), dict) and "_modules" in obj.__dict__


def module_state(obj: Any, prefix: str = "", _seen: frozenset = frozenset()) -> dict:
    """``{dotted name: tensor}`` of a stubbed module tree, as ``state_dict()`` would name it
    (parameters, then persistent buffers, then children in their stored order)."""
    if id(obj) in _seen:
        return {}
    state, out = obj.__dict__, {}
    skip = state.get("_non_persistent_buffers_set")
    skip = skip if isinstance(skip, set | frozenset) else set()
    for table in ("_parameters", "_buffers"):
        for name, value in (state.get(table) or {}).items():
            if isinstance(value, torch.Tensor) and not (table == "_buffers" and name in skip):
                out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None and is_module(child):
            out.update(module_state(child, f"{prefix}{name}.", _seen | {id(obj)}))
    return out


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> Any:
    """A checkpoint's content: ``cjepa.train.load_checkpoint`` (tensors and plain data); a file
    holding pickled objects only with ``trust_pickle``, through :func:`load_inert`, a module
    object coming back as its ``{name: tensor}`` state."""
    from cjepa.train import load_checkpoint

    try:
        return load_checkpoint(path)
    except ValueError as err:
        if "would import the Python object" not in str(err):
            raise
        if not trust_pickle:
            raise ValueError(
                f"{path} holds pickled Python objects, not only tensors (the release's "
                "*_object.ckpt is torch.save of the whole module); pass --trust-pickle to read "
                "its tensors with every class it names replaced by an inert stub (nothing from "
                "the file is imported or run)"
            ) from None
    obj = load_inert(path)
    return module_state(obj) if is_module(obj) else obj
