"""Typed dataclasses from dicts and YAML, with errors that name the field at fault.

The helpers every config in cjepa uses (the experiment config, the ablation preset, the encoder
config, stage options): ``from_dict`` builds a dataclass strictly (unknown keys and wrong types
raise a ValueError naming the dotted field), ``read_yaml`` reads a preset with its ``base:``
chain, ``apply_overrides`` applies ``a.b=value`` overrides, ``check`` and ``one_of`` are the
one-line validations ``__post_init__`` methods call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


def check(ok: bool, name: str, value: Any, expected: str) -> None:
    """Raise ``ValueError("<name> must be <expected>, got <value>")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def one_of(name: str, value: Any, options: Iterable[str]) -> None:
    """``check`` that ``value`` is one of ``options``, listing them."""
    options = list(options)
    check(value in options, name, value, f"one of {options}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types raise.

    A class with a ``prepare_dict(data) -> data`` static method (``ExperimentConfig``: its
    variant's fields) gets its dict through it first. ``prefix`` names the dict in errors
    (``stages.vqa``, ``encoder``)."""
    prepare = getattr(cls, "prepare_dict", None)
    if prepare is not None:
        data = prepare(data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = prefix or "config"
        raise ValueError(f"unknown field(s) {unknown} in {where}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        kwargs[key] = coerce(value, hints[key], full)
    return cls(**kwargs)


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """``value`` checked against (and, for floats from YAML strings, converted to) the type
    ``annotation``; a ValueError names ``name``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(annotation), name)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"{name} must be a mapping with string keys, got {value!r}")
        _, item = typing.get_args(annotation)
        return {k: coerce(v, item, f"{name}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{name} must be a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=name)
    if annotation in _SCALARS:
        return _SCALARS[annotation](value, name)
    raise TypeError(f"{name}: unsupported annotation {annotation!r}")


def _coerce_union(value: Any, options: tuple[Any, ...], name: str) -> Any:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return coerce(value, option, name)
        except (TypeError, ValueError) as err:
            errors.append(str(err))
    raise ValueError(errors[0] if errors else f"{name}: bad value {value!r}")


def _as_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _as_str(value: Any, name: str) -> str:
    if isinstance(value, bool):  # YAML 1.1 reads yes/no as booleans (sweep.use_gpu=yes)
        value = "yes" if value else "no"
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


_SCALARS = {bool: _as_bool, int: _as_int, float: _as_float, str: _as_str}


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``, nested dicts merged key by key."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)``; a syntax error becomes one ValueError line naming ``where`` (a
    file or an override) and the line and column (PyYAML's own text names neither file nor
    override and spans several lines)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ValueError(f"{where}: YAML syntax error{at}: {problem}") from err


def read_yaml(path: Path) -> dict[str, Any]:
    """A preset as a dict; a ``base: other.yaml`` key (relative to the file) is read first and
    this file merged over it."""
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = parse_yaml(path.read_text(), str(path)) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping at the top level")
    base = data.pop("base", None)
    if base is not None:
        data = merge(read_yaml(path.parent / base), data)
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML scalars (``4``, ``1e-3``)."""
    data = dict(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like section.field=value")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = parse_yaml(raw, f"override {item!r}")
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``, for trackers and tables."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, full))
        else:
            out[full] = value
    return out
