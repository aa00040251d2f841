"""A trained ``SlotPredictor`` as a CEM cost (SPEC section 9).

``WorldModelCost`` holds one planning step's inputs for B episodes: their slot histories, the
actions already executed between the history frames, their proprio histories and their goals.
Called on candidates (B, S, H, A) it rolls every episode's history forward under each of its S
candidate sequences, in one predictor forward per predicted step for all B * S rows (or chunks of
``max_batch`` rows), and scores the last predicted step with ``slot_goal_cost``.

Action alignment (``cjepa.data.windows``): ``actions[:, t]`` is the block of ``frameskip`` raw
actions applied after frame t, so with T_h history frames only T_h - 1 blocks were executed
between them, and the block after the last history frame is the first planned one. Rolling out
H planned blocks predicts H frames; the predictor's window also reads the block after its last
frame, which past the plan's end is the zero action (the dataset mean after z-scoring).
"""

from __future__ import annotations

import math
import warnings
import weakref

import torch

from cjepa.planning.cost import slot_goal_cost
from cjepa.predictor import SlotPredictor
from cjepa.predictor_rollout import rollout

#: ``WorldModelCost(precision=...)``: the predictor's compute dtype while planning.
PRECISIONS = ("fp32", "bf16")

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_predictor(model: SlotPredictor, device: torch.device) -> torch.nn.Module:
    """``torch.compile(model)``, made once per model; ``model`` itself (with a one-line warning)
    on a CPU or where ``torch.compile`` is unavailable. A failure at the first compiled call is
    caught by ``WorldModelCost``, which then plans eagerly."""
    if device.type != "cuda":
        warnings.warn(
            f"planning compile=True ignored on {device.type}: torch.compile is used on CUDA only",
            stacklevel=3,
        )
        return model
    if model not in _COMPILED:
        try:
            _COMPILED[model] = torch.compile(model)
        except Exception as err:  # any set-up failure means eager
            warnings.warn(
                f"torch.compile unavailable ({err!r:.120}); planning eagerly", stacklevel=3
            )
            return model
    return _COMPILED[model]


def takes_short_history(model: SlotPredictor) -> bool:
    """Whether ``model`` accepts fewer than T_h history frames (right-aligned time embeddings)."""
    return getattr(model.cfg, "short_history", None) == "right_align"


def check_history(model: SlotPredictor, frames: int, *, setting: str = "history") -> None:
    """Raise a one-line ValueError unless ``model`` can be fed ``frames`` history frames."""
    th = model.history
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"{setting} must be an int >= 1, got {frames!r}")
    if frames > th:
        raise ValueError(f"{setting}={frames} > the model's T_h={th}: it reads at most T_h frames")
    if frames < th and not takes_short_history(model):
        raise ValueError(
            f"{setting}={frames} < the model's T_h={th} (data.history): this predictor needs "
            f"exactly T_h frames; a shorter history needs predictor.short_history=right_align "
            "(right-aligned time embeddings), which it does not have"
        )


def check_inputs(
    model: SlotPredictor,
    history_slots: torch.Tensor,
    goal_slots: torch.Tensor,
    history_actions: torch.Tensor,
    history_proprio: torch.Tensor | None,
) -> None:
    """``WorldModelCost``'s checks of the model and the observed inputs (shapes in its
    docstring); each error names the argument."""
    if model.training:
        raise ValueError("model is in training mode (dropout on); call model.eval() first")
    if not model.action_dim:
        raise ValueError("model has action_dim 0: it cannot score action candidates")
    if history_slots.ndim != 4:
        got = tuple(history_slots.shape)
        raise ValueError(f"history_slots must be (B, T, N, D), got {got}")
    th = history_slots.shape[1]
    check_history(model, th, setting="history_slots frames")
    b, _, n, d = history_slots.shape
    if tuple(goal_slots.shape) != (b, n, d):
        raise ValueError(
            f"goal_slots must be (B, N, D) = {(b, n, d)}, got {tuple(goal_slots.shape)}"
        )
    a = model.action_dim
    if (
        history_actions.ndim != 3
        or tuple(history_actions.shape[::2]) != (b, a)
        or (history_actions.shape[1] not in (th - 1, th))
    ):
        raise ValueError(
            f"history_actions must be (B, T-1={th - 1}, A={a}) (or T={th} steps), "
            f"got {tuple(history_actions.shape)}"
        )
    if model.proprio_dim:
        p = model.proprio_dim
        if history_proprio is None or tuple(history_proprio.shape) != (b, th, p):
            got = None if history_proprio is None else tuple(history_proprio.shape)
            raise ValueError(f"history_proprio must be (B, T, P) = {(b, th, p)}, got {got}")
    elif history_proprio is not None:
        raise ValueError("history_proprio given but the model has proprio_dim 0")


class WorldModelCost:
    """cost(candidates (B, S, H, A)) -> (B, S) from predictor rollouts.

    Args:
        model: a ``SlotPredictor`` in eval mode, with action_dim = A (raw A x frameskip) > 0.
        history_slots: (B, T, N, D) observed slots, oldest first; T = model.history, or fewer
            when the model takes a short history (``check_history``).
        goal_slots: (B, N, D) the goal frame's slots.
        history_actions: (B, T - 1, A) the action blocks executed between the history frames
            (normalised). (B, T, A) is accepted too; its last block (the slot of the first
            planned block) is ignored.
        history_proprio: (B, T, P) observed proprio, required when the model has P > 0.
        goal_proprio: (B, P) the goal's proprio, or None. The proprio term enters the cost only
            when the model predicts proprio (entity encoding); ``uses_proprio`` says whether it
            does.
        match: "hungarian" for slot models, "none" for patch tokens (see ``slot_goal_cost``).
        proprio_weight: weight of the proprio MSE.
        max_batch: most rows per predictor forward (None = all B * S at once; on a CPU a few
            dozen keep the activations in cache).
        solver: Hungarian matcher, "auto" | "permutations" | "scipy".
        precision: "fp32" (default; exact) or "bf16": the predictor runs under bf16 autocast on
            the inputs' device, and the cost is computed in fp32 from its outputs.
        compile: run the predictor through ``torch.compile`` (CUDA only; elsewhere, or if
            compiling fails, a one-line warning and eager execution).

    Rollouts run under ``torch.inference_mode`` (no autograd bookkeeping).

    Counters (cumulative; ``reset_counters`` zeroes them):
        cost_calls: calls of this cost.
        forward_calls: predictor forwards actually run (chunks counted separately).
        rows_forwarded: sequences pushed through the predictor, summed over forwards.
        rollout_steps: forwards each episode's candidates went through (cost_calls times
            ceil(H / T_p)): the predictor calls per episode of a batch-1 planner.
    """

    def __init__(
        self,
        model: SlotPredictor,
        history_slots: torch.Tensor,
        goal_slots: torch.Tensor,
        *,
        history_actions: torch.Tensor,
        history_proprio: torch.Tensor | None = None,
        goal_proprio: torch.Tensor | None = None,
        match: str = "hungarian",
        proprio_weight: float = 1.0,
        max_batch: int | None = None,
        solver: str = "auto",
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        check_inputs(model, history_slots, goal_slots, history_actions, history_proprio)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        b, th = history_slots.shape[:2]
        self.uses_proprio = (
            goal_proprio is not None and model.aux == "entity" and bool(model.proprio_dim)
        )
        if self.uses_proprio and tuple(goal_proprio.shape) != (b, model.proprio_dim):
            raise ValueError(
                f"goal_proprio must be (B, P) = {(b, model.proprio_dim)}, "
                f"got {tuple(goal_proprio.shape)}"
            )
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
        self.model = model
        self.history_slots, self.goal_slots = history_slots, goal_slots
        self.history_actions = history_actions[:, : th - 1]  # (B, T_h - 1, A)
        self.history_proprio = history_proprio
        # proprio_target="embedding": the model predicts proprio embeddings; compare in that space
        with torch.no_grad():
            self.goal_proprio = model.proprio_space(goal_proprio) if self.uses_proprio else None
        self.match, self.proprio_weight = match, proprio_weight
        self.max_batch, self.solver = max_batch, solver
        self.precision = precision
        self.runner = compiled_predictor(model, history_slots.device) if compile else model
        self.batch = b
        self.reset_counters()

    def reset_counters(self) -> None:
        self.cost_calls = self.forward_calls = self.rows_forwarded = self.rollout_steps = 0

    def stats(self) -> dict[str, int]:
        return {
            "cost_calls": self.cost_calls,
            "forward_calls": self.forward_calls,
            "rows_forwarded": self.rows_forwarded,
            "rollout_steps": self.rollout_steps,
        }

    def predict(self, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Last predicted step under each candidate.

        Args:
            candidates: (B, S, H, A) planned action blocks.

        Returns:
            slots (B, S, N, D) and proprio (B, S, P) (None unless the model predicts proprio).
        """
        b, a = self.batch, self.model.action_dim
        if candidates.ndim != 4 or candidates.shape[0] != b or candidates.shape[3] != a:
            raise ValueError(
                f"candidates must be (B={b}, S, H, A={a}), got {tuple(candidates.shape)}"
            )
        s, h = candidates.shape[1], candidates.shape[2]
        rows = b * s
        flat = candidates.reshape(rows, h, a)  # (B*S, H, A)
        episode = torch.arange(b, device=candidates.device).repeat_interleave(s)  # (B*S,)
        chunk = rows if self.max_batch is None else self.max_batch
        slots_out, proprio_out = [], []
        steps = math.ceil(h / self.model.n_future)  # predictor forwards per rollout
        with torch.inference_mode():
            for lo in range(0, rows, chunk):
                pred, pred_p = self._rollout_rows(episode[lo : lo + chunk], flat[lo : lo + chunk])
                slots_out.append(pred)
                if pred_p is not None:
                    proprio_out.append(pred_p)
                self.forward_calls += steps
            slots = torch.cat(slots_out).reshape(b, s, *slots_out[0].shape[1:])
            proprio = torch.cat(proprio_out).reshape(b, s, -1) if proprio_out else None
        self.rollout_steps += steps
        return slots, proprio

    def _run(self, history, h, actions, proprio) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``rollout`` of the (possibly compiled) predictor at the cost's precision; fp32 out."""
        if self.precision == "fp32" and self.runner is self.model:
            return rollout(self.model, history, h, actions=actions, proprio=proprio)
        with torch.autocast(history.device.type, torch.bfloat16, self.precision == "bf16"):
            try:
                pred, pred_p = rollout(self.runner, history, h, actions=actions, proprio=proprio)
            except Exception as err:  # a compile failure must not end the run
                if self.runner is self.model:
                    raise
                warnings.warn(
                    f"torch.compile failed ({err!r:.120}); planning eagerly", stacklevel=2
                )
                self.runner = _COMPILED[self.model] = self.model
                pred, pred_p = rollout(self.model, history, h, actions=actions, proprio=proprio)
        return pred.float(), None if pred_p is None else pred_p.float()

    def _rollout_rows(
        self, idx: torch.Tensor, planned: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Roll m rows forward: the histories of episodes idx (m,) under planned (m, H, A);
        the last predicted slots (m, N, D) and proprio (m, P) (or None)."""
        m, h, a = planned.shape
        actions = torch.cat(
            [
                self.history_actions[idx],  # (m, T_h - 1, A)
                planned,  # (m, H, A)
                planned.new_zeros(m, 1, a),  # the block after the last predicted frame
            ],
            dim=1,
        )  # (m, T_h + H, A)
        proprio = None if self.history_proprio is None else self.history_proprio[idx]
        pred, pred_p = self._run(
            self.history_slots[idx], h, actions, proprio
        )  # (m, H, N, D), (m, H, P) | None
        self.rows_forwarded += m * math.ceil(h / self.model.n_future)
        return pred[:, -1], None if pred_p is None else pred_p[:, -1]

    def __call__(self, candidates: torch.Tensor) -> torch.Tensor:
        """(B, S, H, A) candidates -> (B, S) costs of their last predicted step."""
        slots, proprio = self.predict(candidates)
        self.cost_calls += 1
        use_p = self.uses_proprio and proprio is not None
        with torch.inference_mode():
            return slot_goal_cost(
                slots,
                self.goal_slots,
                proprio if use_p else None,
                self.goal_proprio if use_p else None,
                match=self.match,
                proprio_weight=self.proprio_weight,
                solver=self.solver,
            )
