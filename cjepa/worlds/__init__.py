"""Simulators that make data: ``collide`` (CLEVRER-style 2-D collisions) and ``pusht``.

:mod:`cjepa.worlds.registry` holds one :class:`WorldSpec` per world; importing this package
imports no simulator.
"""

from cjepa.worlds.registry import (
    WORLDS,
    OracleSpec,
    WorldSpec,
    get_world,
    register_world,
    world_names,
)

__all__ = ["WORLDS", "OracleSpec", "WorldSpec", "get_world", "register_world", "world_names"]
