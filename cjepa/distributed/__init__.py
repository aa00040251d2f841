"""Ray-scaled jobs over the core library; the only package that imports Ray.

Among its modules:

- ``cjepa.distributed.extract``: slot extraction (episode shards -> slot shards) on Ray Data,
  with a single-process reference path.
- ``cjepa.distributed.runtime``: starting or joining Ray quietly.

Submodules import Ray at top level; this package itself imports nothing, so importing one
submodule does not pull in the others.
"""
