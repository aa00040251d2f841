"""Tune callbacks of a sweep: progress over finished trials, and trials waiting for resources."""

from __future__ import annotations

import time

import ray
from ray import tune
from tqdm import tqdm

from cjepa.distributed.resources import get_ledger, resource_str, wait_message
from cjepa.sweeps import trial_label


class TrialProgress(tune.Callback):
    """One bar over finished trials on a terminal; one line per finished trial otherwise
    (``ray job logs`` and CI), so a sweep is neither silent nor noisy."""

    def __init__(self, total: int, metric: str) -> None:
        self.metric, self.done = metric, 0
        self.bar = tqdm(total=total, unit="trial", desc="sweep", disable=None)

    def _finish(self, trial, status: str) -> None:
        self.done += 1
        self.bar.update(1)
        label = trial_label(trial.config.get("trial", {})) if trial.config else trial.trial_id
        value = (trial.last_result or {}).get(self.metric)
        shown = f"{self.metric} {value:.4f}" if isinstance(value, float) else status
        if self.bar.disable:
            print(f"[sweep] {self.done}/{self.bar.total} {label}: {shown}", flush=True)
        else:
            self.bar.set_postfix_str(f"{label}: {shown}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, "ERROR")

    def on_experiment_end(self, trials, **info) -> None:
        self.bar.close()


class PendingWatchdog(tune.Callback):
    """Logs trials that wait for resources: Tune trials still PENDING, and running trials whose
    Train worker group or evaluation task the ledger has not seen start. Past ``warn_s`` one
    line per trial (again every ``warn_s``); failing past ``fail_s`` happens in the trial (Ray
    Train's worker-group start timeout, the evaluation task's wait), so the trial's error is the
    same message."""

    def __init__(self, ledger: str, warn_s: float, every_s: float = 1.0) -> None:
        # The ledger by name: a resumed sweep restores this callback from disk, with a new ledger.
        self.ledger, self.warn_s, self.every_s = ledger, warn_s, every_s
        self._last_poll = 0.0
        self._pending_since: dict[str, float] = {}
        self._warned: dict[str, float] = {}
        self.warnings: list[str] = []

    def on_step_end(self, iteration, trials, **info) -> None:
        now = time.time()
        if now - self._last_poll < self.every_s:
            return
        self._last_poll = now
        waits = []
        for trial in trials:
            if trial.status != "PENDING":
                self._pending_since.pop(trial.trial_id, None)
                continue
            since = self._pending_since.setdefault(trial.trial_id, now)
            label = trial_label(trial.config.get("trial", {})) if trial.config else trial.trial_id
            demand = resource_str(trial.placement_group_factory.required_resources)
            waits.append((trial.trial_id, label, "Tune trial actor", demand, now - since))
        try:
            for w in ray.get(get_ledger(self.ledger).waits.remote(), timeout=10):
                waits.append((w["key"], w["label"], w["what"], w["demand"], w["waited_s"]))
        except (ValueError, ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
            pass  # a busy or gone ledger must not stop the sweep; Tune's PENDING still shows
        for key, label, what, demand, waited in waits:
            if waited < self.warn_s or now - self._warned.get(key, 0.0) < self.warn_s:
                continue
            self._warned[key] = now
            line = f"[sweep] waiting: {wait_message(label, what, demand, waited)}"
            self.warnings.append(line)
            print(line, flush=True)
