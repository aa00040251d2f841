"""The data section of an experiment config: which world, which slots, which windows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from cjepa.schema import check, one_of
from cjepa.worlds.registry import WORLDS


@dataclass
class SyntheticConfig:
    """The synthetic interacting-discs generator (``cjepa.data.synthetic``)."""

    n_episodes: int = 400
    episode_len: int = 40
    n_objects: int = 5
    radius: float = 0.11
    speed: float = 0.04
    with_agent: bool = False
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.n_episodes >= 2, "data.synthetic.n_episodes", self.n_episodes, ">= 2")
        check(self.episode_len >= 2, "data.synthetic.episode_len", self.episode_len, ">= 2")
        check(self.n_objects >= 1, "data.synthetic.n_objects", self.n_objects, ">= 1")
        check(0 < self.radius < 0.5, "data.synthetic.radius", self.radius, "in (0, 0.5)")
        check(self.speed > 0, "data.synthetic.speed", self.speed, "> 0")
        check(self.noise >= 0, "data.synthetic.noise", self.noise, ">= 0")


class _WorldAux(Mapping[str, tuple[int, int]]):
    """Auxiliary inputs each world provides from its episode shards: (action dim A, proprio dim
    P), a live read-only view of ``cjepa.worlds.WORLDS`` (worlds registered later show up)."""

    def __getitem__(self, world: str) -> tuple[int, int]:
        spec = WORLDS[world]
        return spec.action_dim, spec.proprio_dim

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(WORLDS))

    def __len__(self) -> int:
        return len(WORLDS)


WORLD_AUX = _WorldAux()


@dataclass
class DataConfig:
    """Where slots come from and how they are cut into windows.

    ``source: synthetic`` simulates interacting discs in memory (``synthetic``); ``source: slots``
    reads slot shards from ``slot_dir`` (written by slot extraction), with actions and proprio
    from the episode shards in ``episode_dir`` when the ``world`` has them (Push-T).
    """

    source: str = "synthetic"
    world: str = "synthetic"
    slot_dir: str | None = None
    episode_dir: str | None = None
    n_slots: int | None = None
    slot_dim: int = 64
    history: int = 6
    n_future: int = 1
    frameskip: int = 1
    stride: int = 1
    val_fraction: float = 0.1
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        one_of("data.source", self.source, ["synthetic", "slots"])
        check(self.history >= 2, "data.history", self.history, ">= 2 (frame 0 is the anchor)")
        check(self.n_future >= 1, "data.n_future", self.n_future, ">= 1")
        check(self.frameskip >= 1, "data.frameskip", self.frameskip, ">= 1")
        check(self.stride >= 1, "data.stride", self.stride, ">= 1")
        check(self.slot_dim >= 1, "data.slot_dim", self.slot_dim, ">= 1")
        check(0 < self.val_fraction < 1, "data.val_fraction", self.val_fraction, "in (0, 1)")
        if self.source == "synthetic":
            one_of("data.world", self.world, ["synthetic"])
            if self.n_slots is None:
                self.n_slots = self.synthetic.n_objects
            check(
                self.n_slots == self.synthetic.n_objects,
                "data.n_slots",
                self.n_slots,
                f"data.synthetic.n_objects={self.synthetic.n_objects} for synthetic data",
            )
        else:
            one_of("data.world", self.world, list(WORLD_AUX))
            check(
                self.slot_dir is not None,
                "data.slot_dir",
                self.slot_dir,
                "a directory of slot shards when data.source is 'slots'",
            )
            check(
                self.n_slots is not None,
                "data.n_slots",
                self.n_slots,
                "set (the slot shards' N) when data.source is 'slots'",
            )
        check(self.n_slots >= 1, "data.n_slots", self.n_slots, ">= 1")

    @property
    def window(self) -> int:
        return self.history + self.n_future

    @property
    def action_dim(self) -> int:
        """Raw per-frame action size A (a window step carries A x frameskip numbers)."""
        if self.source == "synthetic":
            return 2 if self.synthetic.with_agent else 0
        return WORLD_AUX[self.world][0] if self.episode_dir else 0

    @property
    def proprio_dim(self) -> int:
        if self.source == "synthetic":
            return 4 if self.synthetic.with_agent else 0
        return WORLD_AUX[self.world][1] if self.episode_dir else 0
