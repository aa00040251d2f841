"""What a sweep's trials reserve, and getting all of it back whichever way a trial ends.

A ``ray_train`` trial starts a Train controller, which creates the placement group of its worker
group. That placement group belongs to the *job* (the sweep's driver), not to the controller:
when Tune stops a trial (an ASHA stop, an error) the trial's process exits, the controller and
its workers die with it, and the placement group stays reserved until the driver exits. Ray
Train's own ``PlacementGroupCleaner`` would remove it, but it learns of the controller's death
through the State API, which needs the dashboard's HTTP server; ``init_ray`` starts Ray without
one, so on the documented 2-CPU run an ASHA-stopped trial kept 1 CPU reserved and the next trial
waited forever (issue 17).

``TrialLedger`` (one actor per sweep, owned by the driver) closes that gap with public Ray calls
only: each trial registers its own actor handle, rank 0 of each Train worker group registers the
group's placement group, and when a trial's actor is dead the ledger removes what it registered.
It also records what each trial is waiting for (its worker group, its evaluation task), which
``cjepa.distributed.sweep.PendingWatchdog`` reports with the cluster's free resources and
pending placement groups.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

NAMESPACE = "cjepa"
TRIAL_CPU = 0.01  # what a ray_train trial itself reserves: its Train workers get the CPUs
TRAIN_WORKERS = "Train worker group"
EVALUATION = "evaluation task"


class PendingTimeout(RuntimeError):
    """A trial waited longer than ``sweep.pending_fail_s`` for resources on a fixed-size
    cluster."""


def ledger_name(sweep_id: str) -> str:
    return f"cjepa-ledger-{sweep_id}"


@ray.remote(num_cpus=0, max_concurrency=8)
class TrialLedger:
    """Per sweep: each trial's placement groups and what it waits for (keyed by the trial's
    actor id, so a retried trial is a new entry)."""

    def __init__(self, poll_s: float = 0.5) -> None:
        self._lock = threading.Lock()
        self._trials: dict[str, dict[str, Any]] = {}
        self._dead: set[str] = set()
        self._released = 0
        self._poll_s = poll_s
        threading.Thread(target=self._watch_loop, daemon=True).start()

    def watch(self, key: str, label: str, actor) -> None:
        with self._lock:
            self._trials[key] = {
                "label": label,
                "actor": actor,
                "ping": actor.__ray_ready__.remote(),
                "groups": [],
                "wait": None,
            }

    def waiting(self, key: str, what: str, demand: str) -> None:
        with self._lock:
            self._trials[key]["wait"] = {"what": what, "demand": demand, "since": time.time()}

    def placed(self, key: str, what: str, group: PlacementGroup | None = None) -> None:
        """``what`` started; ``group``: the placement group it runs in (removed if the trial
        ends without removing it)."""
        with self._lock:
            dead = key in self._dead
            trial = self._trials.get(key)
            if trial is not None:
                if trial["wait"] and trial["wait"]["what"] == what:
                    trial["wait"] = None
                if group is not None:
                    trial["groups"].append(group)
        if dead and group is not None:  # registered after its trial was found dead
            self._remove([group])

    def is_waiting(self, key: str, what: str) -> bool:
        with self._lock:
            wait = self._trials.get(key, {}).get("wait")
            return bool(wait and wait["what"] == what)

    def waits(self) -> list[dict[str, Any]]:
        """Every trial waiting for something: ``{key, label, what, demand, waited_s}``."""
        now = time.time()
        with self._lock:
            return [
                {
                    "key": k,
                    "label": t["label"],
                    "what": t["wait"]["what"],
                    "demand": t["wait"]["demand"],
                    "waited_s": now - t["wait"]["since"],
                }
                for k, t in self._trials.items()
                if t["wait"]
            ]

    def released(self) -> int:
        """Placement groups this ledger removed because their trial had ended."""
        return self._released

    def release_all(self) -> int:
        """At the sweep's end every trial has ended: remove whatever is still reserved."""
        with self._lock:
            groups = [g for t in self._trials.values() for g in t["groups"]]
            self._trials.clear()
        return self._remove(groups)

    def _watch_loop(self) -> None:
        while True:
            time.sleep(self._poll_s)
            try:
                self._reap()
            except Exception as err:  # the watcher must outlive one bad poll
                print(f"TrialLedger: {err!r}", flush=True)

    def _reap(self) -> None:
        """Remove the placement groups of every watched trial whose actor has died."""
        with self._lock:
            pings = {k: t["ping"] for k, t in self._trials.items()}
        if not pings:
            return
        ready, _ = ray.wait(list(pings.values()), num_returns=len(pings), timeout=0)
        for key, ping in pings.items():
            if ping not in ready:
                continue  # the actor is busy (it runs one call at a time) or starting
            try:
                ray.get(ping)
            except ray.exceptions.RayActorError:
                with self._lock:
                    trial = self._trials.pop(key, None)
                    self._dead.add(key)
                if trial is not None:
                    self._remove(trial["groups"])
                continue
            with self._lock:  # alive: ask again next poll
                if key in self._trials:
                    trial = self._trials[key]
                    trial["ping"] = trial["actor"].__ray_ready__.remote()

    def _remove(self, groups: list[PlacementGroup]) -> int:
        removed = 0
        for group in groups:
            if placement_group_table(group).get("state", "REMOVED") == "REMOVED":
                continue  # the Train run shut its worker group down itself
            remove_placement_group(group)
            removed += 1
        with self._lock:
            self._released += removed
        return removed


def start_ledger(sweep_id: str):
    """The sweep's ledger (owned by the calling driver: it ends with the sweep)."""
    return TrialLedger.options(name=ledger_name(sweep_id), namespace=NAMESPACE).remote()


def get_ledger(name: str):
    return ray.get_actor(name, namespace=NAMESPACE)


def report_placed(placement: dict[str, str] | None, what: str, in_group: bool) -> None:
    """Called where ``what`` starts (rank 0 of a Train worker group, an evaluation task):
    tells the trial's ledger, with the placement group it runs in when ``in_group``."""
    if not placement:
        return
    group = ray.util.get_current_placement_group() if in_group else None
    get_ledger(placement["ledger"]).placed.remote(placement["key"], what, group)


def resource_str(resources: dict[str, float]) -> str:
    """``{CPU: 0.99, GPU: 1}``: CPUs, GPUs and custom resources, without Ray's bookkeeping ones
    (memory, node and placement-group-bundle resources)."""
    hidden = ("memory", "object_store_memory")
    shown = {
        k: v
        for k, v in sorted(resources.items())
        if k not in hidden and not k.startswith("node:") and "_group_" not in k
    }
    return "{" + ", ".join(f"{k}: {round(float(v), 3):g}" for k, v in shown.items()) + "}"


def cluster_state() -> str:
    """The cluster's free resources and the placement groups Ray has not placed yet."""
    free = resource_str({k: float(v) for k, v in ray.available_resources().items()})
    pending = [
        t for t in placement_group_table().values() if t["state"] in ("PENDING", "RESCHEDULING")
    ]
    groups = "; ".join(
        f"{t['strategy']} {[resource_str(b) for b in t['bundles'].values()]} "
        f"({t.get('stats', {}).get('scheduling_state', t['state'])})"
        for t in pending
    )
    return f"free {free}; pending placement groups: {groups or 'none'}"


def wait_message(label: str, what: str, demand: str, waited_s: float) -> str:
    return f"trial {label} has waited {waited_s:.0f} s for its {what} ({demand}); {cluster_state()}"
