"""One registry of worlds: everything the platform needs to know about a world, in one place.

A :class:`WorldSpec` names the world's episode factory, its auxiliary input sizes, its oracle
featuriser, its ``make_data.py`` options, the paper's window and what the ablation pipeline does
with it. Every table that used to list worlds (``cjepa.data.generate``, ``cjepa.config``,
``cjepa.encoders.oracle``, ``cjepa.data.windows``, ``cjepa.distributed.pipeline``,
``experiments/make_data.py``) reads :data:`WORLDS`.

Factories are ``"module:attribute"`` strings imported on first use (``cjepa.registry``), so
importing this module (and ``cjepa``) never imports pymunk or gym-pusht. Adding a world is one
module with its ``make_episode`` (and featuriser) plus one ``register_world`` line below; tests
register toy worlds with ``monkeypatch.setitem(WORLDS, name, spec)``. A data-only world (no
simulator, ``make_episode=None``: ``clevrer``) gets its episodes from a published dataset
imported with ``experiments/make_data.py --from`` (``cjepa.data.importer``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cjepa.registry import load_entry

#: ``make_episode(episode_index, *, seed, **options) -> EpisodeData``, or its "module:attr".
EpisodeFactory = Callable[..., Any] | str
#: ``featurise(episode) -> (features (T, K, 7), attrs (K, n_attr))``, or its "module:attr".
Featuriser = Callable[[Any], tuple[Any, Any]] | str

WINDOW_KEYS = ("history", "n_future", "frameskip")


@dataclass(frozen=True)
class OracleSpec:
    """How the oracle encoder (``cjepa.encoders.oracle``) reads this world's ground truth.

    ``featurise`` maps an episode to per-entity state features (T, K, 7) (x, y, vx, vy, sin and
    cos of the angle, present; roughly in [-1, 1]) and attribute codes (K, ``n_attr``); the
    encoder embeds entity k into slot k, fills slots K..N-2 with "empty" and the last slot with
    "background", so K <= ``n_slots`` - 1. ``accepts`` lists the ``EpisodeData.world`` values it
    encodes (e.g. a published layout of the same world).
    """

    featurise: Featuriser
    n_slots: int
    n_attr: int
    accepts: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.n_slots < 2 or self.n_attr < 1 or not self.accepts:
            raise ValueError(
                f"OracleSpec needs n_slots >= 2, n_attr >= 1 and accepted worlds, got "
                f"n_slots={self.n_slots}, n_attr={self.n_attr}, accepts={self.accepts}"
            )

    def featuriser(self) -> Callable[[Any], tuple[Any, Any]]:
        return load_entry(self.featurise)


@dataclass(frozen=True)
class WorldSpec:
    """One world.

    Args:
        name: the world name (``EpisodeData.world``, shard names, ``--world``, ``data.world``).
        make_episode: the episode factory, a pure function of ``(episode_index, seed, **options)``;
            None for a data-only world (no simulator: its shards come from an import).
        action_dim, proprio_dim: A and P the episode shards provide to training (0: none).
        proprio_columns: which columns of object 0's state (``EpisodeData.states[:, 0]``) are
            the proprio vector; ``proprio_dim`` of them.
        oracle: the oracle encoder's featuriser and slot layout (None: no oracle for it).
        length_option: the factory's episode-length keyword that ``make_data.py --frames`` sets.
        make_data_defaults: factory options ``make_data.py`` passes when the flag is not given
            (Push-T's ``policy: scripted``).
        window: the paper's window, ``{"history", "n_future", "frameskip"}`` (None: no preset).
        pipeline_episode_dir: the ablation pipeline sets the trials' ``data.episode_dir`` to the
            episode shards, so training reads their actions and proprio (stages always get the
            episode directory in their context).
        default_stages: evaluation stages the ablation runs when a preset lists none for it.
    """

    name: str
    make_episode: EpisodeFactory | None
    action_dim: int = 0
    proprio_dim: int = 0
    proprio_columns: tuple[int, ...] = ()
    oracle: OracleSpec | None = None
    length_option: str = "frames"
    make_data_defaults: Mapping[str, Any] = field(default_factory=dict)
    window: Mapping[str, int] | None = None
    pipeline_episode_dir: bool = False
    default_stages: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {"final_validation": {}}
    )

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"world name must be an identifier, got {self.name!r}")
        if self.action_dim < 0 or self.proprio_dim < 0:
            raise ValueError(
                f"world {self.name!r}: action_dim and proprio_dim must be >= 0, got "
                f"{self.action_dim}, {self.proprio_dim}"
            )
        if len(self.proprio_columns) != self.proprio_dim:
            raise ValueError(
                f"world {self.name!r}: proprio_columns {list(self.proprio_columns)} must name "
                f"proprio_dim={self.proprio_dim} state columns"
            )
        if self.window is not None and sorted(self.window) != sorted(WINDOW_KEYS):
            raise ValueError(
                f"world {self.name!r}: window must have keys {list(WINDOW_KEYS)}, "
                f"got {sorted(self.window)}"
            )

    def factory(self) -> Callable[..., Any]:
        """The episode factory itself (imports its module on first use); a data-only world
        raises a ValueError that says how to import its data."""
        if self.make_episode is None:
            raise ValueError(
                f"world {self.name!r} has no simulator (data only): import a local copy of its "
                f"published data with experiments/make_data.py --from {self.name} PATH --out DIR"
            )
        return load_entry(self.make_episode)


#: World name -> spec. Read it through :func:`get_world`; add to it with :func:`register_world`.
WORLDS: dict[str, WorldSpec] = {}


def register_world(spec: WorldSpec, *, replace: bool = False) -> WorldSpec:
    """Add ``spec`` under ``spec.name``; a name already taken is refused unless ``replace``.

    With process workers (``generate_shards(workers > 1)``) the factory must be importable by
    reference: a module-level function or a "module:attr" string.
    """
    if spec.name in WORLDS and not replace:
        raise ValueError(f"world {spec.name!r} is already registered")
    WORLDS[spec.name] = spec
    return spec


def get_world(name: str) -> WorldSpec:
    """The spec of ``name``; an unknown name fails with the list of known ones."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; known: {sorted(WORLDS)}")
    return WORLDS[name]


def world_names() -> list[str]:
    """The registered world names, sorted."""
    return sorted(WORLDS)


# ----------------------------------------------------------------------------- built-in worlds

register_world(
    WorldSpec(
        "collide",
        "cjepa.worlds.collide:make_episode",
        oracle=OracleSpec("cjepa.encoders.oracle:collide_features", 7, 13, ("collide",)),
        window={"history": 6, "n_future": 10, "frameskip": 2},  # CLEVRER's (SPEC section 7)
    )
)
register_world(
    WorldSpec(
        "pusht",
        "cjepa.worlds.pusht:make_episode",
        action_dim=2,
        proprio_dim=4,
        proprio_columns=(0, 1, 5, 6),  # agent x, y, vx, vy of the 7-column state
        oracle=OracleSpec("cjepa.encoders.oracle:pusht_features", 4, 3, ("pusht", "dinowm_pusht")),
        length_option="steps",
        make_data_defaults={"policy": "scripted"},
        window={"history": 3, "n_future": 1, "frameskip": 5},
        pipeline_episode_dir=True,
    )
)
register_world(
    WorldSpec(
        "clevrer",
        None,  # data only: experiments/make_data.py --from clevrer PATH
        oracle=OracleSpec("cjepa.worlds.clevrer:clevrer_features", 7, 13, ("clevrer",)),
        window={"history": 6, "n_future": 10, "frameskip": 2},  # the paper's CLEVRER window
    )
)
