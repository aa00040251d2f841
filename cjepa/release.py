"""Released C-JEPA predictors (galilai-group/cjepa) as cjepa predictor checkpoints.

The official code trains ``MaskedSlotPredictor`` (``custom_models/cjepa_predictor.py``; the
training scripts import the same class from ``src/cjepa_predictor.py``) and saves either its
plain ``state_dict`` (CLEVRER, ``train_causalwm_from_clevrer_slot.py``) or a Lightning
checkpoint of the whole world model, ``{"state_dict": {"model.predictor.*",
"model.action_encoder.*", "model.proprio_encoder.*", "model.encoder.*", ...}}`` (Push-T,
``train_causalwm_AP_node_pusht_slot.py``). This module maps those tensors onto
``cjepa.predictor.SlotPredictor`` built with ``variant: official`` (issue H: the two agree to
2e-15 in float64 with these settings) and writes the ``predictor.pt`` that sweeps write
(``{"model", "config", "step"}``), so ``experiments/evaluate.py`` scores it unchanged.

Official name -> cjepa name (W transformer width, T = T_h + T_p, i a block):

=================================================  ==========================  ==============
official                                           cjepa                       shape change
=================================================  ==========================  ==============
mask_token (1, 1, W)                               mask_token (W)              reshape
time_pos_embed (1, T, 1, W)                        time_embed (T, W)           reshape
id_projector.{weight,bias}                         phi.*
transformer.layers.i.0.in_proj_{weight,bias}       blocks.i.attn.qkv.*         (3W, W): q, k, v
transformer.layers.i.0.out_proj.{weight,bias}      blocks.i.attn.out.*
transformer.layers.i.1.0.* (LayerNorm)             blocks.i.norm2.*
transformer.layers.i.1.1.* / .1.4.* (Linear)       blocks.i.mlp.0.* / .mlp.3.*
transformer.norm.*                                 norm.*
to_out.*                                           head.*
{action,proprio}_encoder.patch_embed.weight        {action,proprio}_in.weight  (C, A, 1) -> (C, A)
=================================================  ==========================  ==============

Auxiliary encoders (stable-worldmodel's ``Embedder``, a kernel-1 Conv1d) map to
``action_in``/``proprio_in`` (entity tokens, C = W) or ``action_small``/``proprio_small``
(features appended to every slot, C = ``concat_dim``). ``nn.MultiheadAttention`` packs q, k, v
row blocks with heads contiguous inside each, as ``cjepa.transformer.Attention`` splits them.
The number of heads is not stored in the weights: it comes from ``predictor.heads`` (16, the
official default). Everything else the weights determine, and the config is filled or checked
against them (:func:`release_config`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cjepa.config import ExperimentConfig, from_dict
from cjepa.data.config import WORLD_AUX

#: What ``predictor.pt`` records as its source format.
OFFICIAL_FORMAT = "galilai-group/cjepa MaskedSlotPredictor state_dict"

_TOP = {
    "mask_token": "mask_token",
    "time_pos_embed": "time_embed",
    "id_projector.weight": "phi.weight",
    "id_projector.bias": "phi.bias",
    "transformer.norm.weight": "norm.weight",
    "transformer.norm.bias": "norm.bias",
    "to_out.weight": "head.weight",
    "to_out.bias": "head.bias",
}
_BLOCK = {
    "0.in_proj_weight": "attn.qkv.weight",
    "0.in_proj_bias": "attn.qkv.bias",
    "0.out_proj.weight": "attn.out.weight",
    "0.out_proj.bias": "attn.out.bias",
    "1.0.weight": "norm2.weight",
    "1.0.bias": "norm2.bias",
    "1.1.weight": "mlp.0.weight",
    "1.1.bias": "mlp.0.bias",
    "1.4.weight": "mlp.3.weight",
    "1.4.bias": "mlp.3.bias",
}
_AUX_MODULES = {"entity": ("action_in", "proprio_in"), "concat": ("action_small", "proprio_small")}
_ENCODERS = ("action_encoder.", "proprio_encoder.")


def key_map(depth: int, aux: str = "none") -> dict[str, str]:
    """Official state-dict name -> cjepa ``SlotPredictor`` name, for ``depth`` blocks and the
    auxiliary encoding ``aux`` (``entity``, ``concat`` or ``none``)."""
    out = dict(_TOP)
    for i in range(depth):
        out.update({f"transformer.layers.{i}.{o}": f"blocks.{i}.{c}" for o, c in _BLOCK.items()})
    for enc, module in zip(_ENCODERS, _AUX_MODULES.get(aux, ()), strict=False):
        out.update({f"{enc}patch_embed.{p}": f"{module}.{p}" for p in ("weight", "bias")})
    return out


@dataclass
class ReleaseParts:
    """An official checkpoint split by module: ``predictor`` (names relative to the predictor),
    ``aux`` (``action_encoder.*`` / ``proprio_encoder.*``) and the ``ignored`` keys of other
    modules (the frozen encoder, slot attention, decoder of a Lightning world model)."""

    predictor: dict[str, torch.Tensor]
    aux: dict[str, torch.Tensor]
    prefix: str = ""
    ignored: list[str] = field(default_factory=list)
    aux_prefix: str = ""


def split_checkpoint(payload: Any, where: str = "checkpoint") -> ReleaseParts:
    """Find the predictor in a plain or Lightning-style (``{"state_dict": ...}``) state dict:
    the prefix before ``id_projector.weight`` (``""``, ``module.``, ``model.predictor.``);
    the auxiliary encoders sit beside the predictor (``model.action_encoder.*``)."""
    sd = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise ValueError(f"{where}: not a state dict (a mapping of names to tensors)")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    anchors = sorted(
        k[: -len("id_projector.weight")] for k in sd if k.endswith("id_projector.weight")
    )
    if len(anchors) != 1:
        found = "no key" if not anchors else f"{len(anchors)} keys ({anchors})"
        raise ValueError(
            f"{where}: not an official C-JEPA predictor: {found} ending in 'id_projector.weight'"
        )
    prefix = anchors[0]
    parent = prefix[: -len("predictor.")] if prefix.endswith("predictor.") else prefix
    n = len(parent)
    aux = {k[n:]: v for k, v in sd.items() if k.startswith(parent) and k[n:].startswith(_ENCODERS)}
    taken = {parent + k for k in aux}
    predictor = {
        k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix) and k not in taken
    }
    ignored = sorted(k for k in sd if not k.startswith(prefix) and k not in taken)
    return ReleaseParts(predictor, aux, prefix, ignored, parent)


@dataclass(frozen=True)
class ReleaseShapes:
    """What the weights say: transformer ``width`` W, ``depth``, ``mlp_dim``, ``frames`` T_h+T_p,
    the encoders' input sizes (0: absent) and output size ``aux_width``."""

    width: int
    depth: int
    mlp_dim: int
    frames: int
    action_in: int = 0
    proprio_in: int = 0
    aux_width: int = 0

    @property
    def n_aux(self) -> int:
        return bool(self.action_in) + bool(self.proprio_in)


def _need(sd: dict[str, torch.Tensor], key: str, ndim: int, where: str) -> torch.Tensor:
    if key not in sd:
        raise ValueError(f"{where}: missing key {key!r}")
    if sd[key].ndim != ndim:
        raise ValueError(f"{where}: {key!r} has shape {tuple(sd[key].shape)}, want {ndim} dims")
    return sd[key]


def infer_shapes(parts: ReleaseParts, where: str = "checkpoint") -> ReleaseShapes:
    """Read the architecture off the official tensors (heads excepted: not stored)."""
    p = parts.predictor
    width = _need(p, "to_out.weight", 2, where).shape[0]
    depth = 0
    while f"transformer.layers.{depth}.0.in_proj_weight" in p:
        depth += 1
    if not depth:
        raise ValueError(f"{where}: missing key 'transformer.layers.0.0.in_proj_weight'")
    mlp = _need(p, "transformer.layers.0.1.1.weight", 2, where).shape[0]
    frames = _need(p, "time_pos_embed", 4, where).shape[1]
    dims = {}
    for enc in _ENCODERS:
        key = f"{enc}patch_embed.weight"
        if key in parts.aux:
            w = _need(parts.aux, key, 3, where)
            if w.shape[2] != 1:
                raise ValueError(f"{where}: {key!r} has kernel {w.shape[2]}; only 1 is supported")
            dims[enc] = (w.shape[1], w.shape[0])
    outs = {c for _, c in dims.values()}
    if len(outs) > 1:
        raise ValueError(f"{where}: action and proprio encoders embed to different sizes {outs}")
    a, pr = dims.get("action_encoder.", (0, 0)), dims.get("proprio_encoder.", (0, 0))
    return ReleaseShapes(width, depth, mlp, frames, a[0], pr[0], max(outs, default=0))


def _fill(data: dict, dotted: str, value: Any, why: str) -> None:
    """Set ``data[section][name]`` to what the weights say, or check the config's own value."""
    section, name = dotted.split(".")
    given = data[section].get(name, value)
    if given != value:
        raise ValueError(
            f"{dotted}={given!r} in the config, but the checkpoint says {value!r} ({why})"
        )
    data[section][name] = value


def release_config(data: dict[str, Any], shapes: ReleaseShapes) -> ExperimentConfig:
    """The ``variant: official`` config for the released weights: fields the weights decide are
    filled, or checked when ``data`` (a preset dict with overrides applied) sets them.

    Not decided by the weights: ``predictor.heads`` (default 16), ``data.n_slots`` (read from
    ``data.slot_dir`` when unset and shards are there), ``data.history`` vs ``data.n_future``
    (one of them, or the world's window, with T_h + T_p = the time-embedding rows)."""
    data = copy.deepcopy(data)
    if data.setdefault("variant", "official") != "official":
        raise ValueError(f"variant is {data['variant']!r}: released weights need variant=official")
    d, p = data.setdefault("data", {}), data.setdefault("predictor", {})
    d.setdefault("source", "slots")
    d.setdefault("world", "pusht" if shapes.n_aux else "clevrer")
    if shapes.n_aux:
        _aux_fields(data, shapes)
    concat = p.get("aux_encoding") == "concat"
    slot_dim = shapes.width - (shapes.aux_width * shapes.n_aux if concat else 0)
    _fill(data, "data.slot_dim", slot_dim, "to_out.weight rows, less appended aux features")
    _fill(data, "predictor.width", slot_dim, "the official predictor width is the slot dim")
    _fill(data, "predictor.depth", shapes.depth, "the number of transformer.layers")
    _fill(data, "predictor.mlp_dim", shapes.mlp_dim, "transformer.layers.0.1.1.weight rows")
    _window(d, shapes.frames)
    if d.get("n_slots") is None and d.get("slot_dir"):
        d["n_slots"] = _shard_n_slots(d["slot_dir"])
    return from_dict(ExperimentConfig, data)


def _aux_fields(data: dict[str, Any], shapes: ReleaseShapes) -> None:
    """The auxiliary-input fields of a checkpoint with action/proprio encoders."""
    d = data["data"]
    aux = "entity" if shapes.aux_width == shapes.width else "concat"
    why = f"encoders embed to {shapes.aux_width}, transformer width {shapes.width}"
    _fill(data, "predictor.aux_encoding", aux, why)
    if aux == "concat":
        _fill(data, "predictor.concat_dim", shapes.aux_width, "the encoders' output size")
    if not d.get("episode_dir"):
        raise ValueError(
            "data.episode_dir must be set: the checkpoint has action/proprio encoders and "
            "cjepa reads actions and proprio from episode shards"
        )
    a = WORLD_AUX[d["world"]][0] if d["world"] in WORLD_AUX else 0
    if a and shapes.action_in % a == 0:
        why = f"{shapes.action_in} action inputs = A={a} x frameskip"
        _fill(data, "data.frameskip", shapes.action_in // a, why)


def _window(d: dict[str, Any], frames: int) -> None:
    """Fill data.history / data.n_future so that they sum to ``frames``."""
    from cjepa.worlds.registry import get_world

    why = f"time_pos_embed has {frames} rows = T_h + T_p"
    if "history" in d and "n_future" not in d:
        d["n_future"] = frames - int(d["history"])
    elif "n_future" in d and "history" not in d:
        d["history"] = frames - int(d["n_future"])
    elif "history" not in d:
        window = get_world(d["world"]).window or {}
        if window.get("history", 0) + window.get("n_future", 0) != frames:
            raise ValueError(f"data.history is not set and the world's window does not fit: {why}")
        d["history"], d["n_future"] = window["history"], window["n_future"]
        d.setdefault("frameskip", window.get("frameskip", 1))
    if int(d["history"]) + int(d["n_future"]) != frames:
        raise ValueError(f"data.history={d['history']} + data.n_future={d['n_future']}: {why}")


def _shard_n_slots(slot_dir: str) -> int | None:
    from cjepa.data.shards import read_shard_metadata
    from cjepa.data.splits import list_shards

    paths = list_shards(slot_dir, "slots") if Path(slot_dir).is_dir() else []
    return read_shard_metadata(paths[0])["n_slots"] if paths else None


def _as_cjepa(key: str, value: torch.Tensor, want: torch.Size) -> torch.Tensor:
    """An official tensor in cjepa's layout: the reshapes of the table above, or unchanged."""
    squeeze = key in ("mask_token", "time_pos_embed") or key.endswith("patch_embed.weight")
    if squeeze and value.numel() == want.numel():
        return value.reshape(want)
    return value


def to_cjepa_state(
    parts: ReleaseParts, model: torch.nn.Module, where: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The official tensors renamed and reshaped into ``model.state_dict()``'s layout (float32
    copies). A missing, unexpected or wrongly shaped key raises one ValueError naming it and
    both shapes."""
    mapping = key_map(len(model.blocks), getattr(model, "aux", "none"))
    target = model.state_dict()
    given = {**parts.predictor, **parts.aux}
    prefix = {k: (parts.prefix if k in parts.predictor else parts.aux_prefix) for k in given}
    out: dict[str, torch.Tensor] = {}
    for key, value in given.items():
        name = mapping.get(key)
        if name is None or name not in target:
            raise ValueError(
                f"{where}: unexpected key {prefix[key] + key!r} {tuple(value.shape)}: the "
                f"predictor its config describes has no place for it{_aux_hint(key)}"
            )
        v = _as_cjepa(key, value, target[name].shape)
        if v.shape != target[name].shape:
            raise ValueError(
                f"{where}: {prefix[key] + key!r} has shape {tuple(value.shape)}, cjepa's "
                f"{name!r} needs {tuple(target[name].shape)}"
            )
        out[name] = v.detach().to(target[name].dtype).clone()
    back = {c: o for o, c in mapping.items()}
    for name, value in target.items():
        if name not in out:
            raise ValueError(
                f"{where}: missing key {back.get(name, '(no official name)')!r}: cjepa's "
                f"{name!r} {tuple(value.shape)} has no value"
            )
    return out


def _aux_hint(key: str) -> str:
    if key.startswith(_ENCODERS):
        return " (actions/proprio need data.world=pusht and data.episode_dir)"
    return ""


def to_official(model: torch.nn.Module) -> ReleaseParts:
    """The inverse of :func:`to_cjepa_state`: ``model``'s weights under the official names
    and shapes (``predictor`` relative to the predictor, ``aux`` the encoders)."""
    mapping = key_map(len(model.blocks), getattr(model, "aux", "none"))
    sd = model.state_dict()
    parts = ReleaseParts({}, {})
    for official, name in mapping.items():
        if name not in sd:
            continue
        v = sd[name].detach().clone()
        if official == "mask_token":
            v = v.reshape(1, 1, -1)
        elif official == "time_pos_embed":
            v = v.reshape(1, v.shape[0], 1, v.shape[1])
        elif official.endswith("patch_embed.weight"):
            v = v.unsqueeze(-1)
        (parts.aux if official.startswith(_ENCODERS) else parts.predictor)[official] = v
    return parts


def import_predictor(
    path: str | Path, data: dict[str, Any], *, trust_pickle: bool = False
) -> tuple[ExperimentConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read an official checkpoint (``torch.load(weights_only=True)``) and map it.

    Args:
        path: the official ``.ckpt``: a state dict or ``{"state_dict": ...}``; with
            ``trust_pickle`` also a pickled module (``cjepa.release_objects.read_checkpoint``).
        data: the experiment config dict (preset + overrides) before the weights fill it.

    Returns:
        (config, cjepa state dict, a ``release`` record: source, sha256, format, prefix,
        ignored key count, heads).
    """
    from cjepa.encoders.base import file_sha256
    from cjepa.release_objects import read_checkpoint
    from cjepa.steps import build_predictor

    where = str(path)
    parts = split_checkpoint(read_checkpoint(path, trust_pickle=trust_pickle), where)
    cfg = release_config(data, infer_shapes(parts, where))
    model = build_predictor(cfg)
    state = to_cjepa_state(parts, model, where)
    model.load_state_dict(state)  # strict: every key was checked above
    record = {
        "format": OFFICIAL_FORMAT,
        "source": str(path),
        "sha256": file_sha256(path),
        "prefix": parts.prefix,
        "ignored_keys": len(parts.ignored),
        "heads": cfg.predictor.heads,
    }
    return cfg, state, record


def save_release_checkpoint(
    out: str | Path, cfg: ExperimentConfig, state: dict[str, torch.Tensor], record: dict
) -> None:
    """Atomically write ``out`` in the sweeps' ``predictor.pt`` format (step 0, no history)."""
    from cjepa.train import save_checkpoint

    payload = {"model": state, "config": cfg.to_dict(), "step": 0, "release": record}
    save_checkpoint(out, payload)
