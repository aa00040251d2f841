"""Synthetic interacting slots: discs that collide, encoded by a fixed linear "encoder".

A stand-in for real slot shards (and a test fixture): each object's next state depends on the
objects it touches, so a hidden object can be recovered from the others only by modelling the
interactions, which is the situation C-JEPA's object masking targets.

Physics: K discs of radius r and random masses in the unit box, soft elastic contacts (a stiff
spring while two discs overlap) integrated with semi-implicit Euler substeps, reflecting walls.
With ``with_agent`` object 0 is an agent whose velocity is pushed by a smoothed random action
(A = 2); its proprio is [x, y, vx, vy] (P = 4).

Slots: per object the features [x, y, vx, vy, mass, a1, a2, a3] (a = a fixed random attribute
per object, so identity is visible), mapped to D dims by a fixed random matrix, in a random slot
order per episode (slots are exchangeable, as slot attention's are).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cjepa.config import SyntheticConfig

_SUBSTEPS = 8
_STIFFNESS = 12.0
_FEATURES = 8


@dataclass
class SlotEpisodes:
    """slots (E, L, N, D); actions (E, L, A) or None; proprio (E, L, P) or None;
    states (E, L, K, 4) ground-truth [x, y, vx, vy] in slot order; contacts (E, L, K, K) bool."""

    slots: torch.Tensor
    actions: torch.Tensor | None
    proprio: torch.Tensor | None
    states: torch.Tensor
    contacts: torch.Tensor

    def __len__(self) -> int:
        return self.slots.shape[0]

    def select(self, index: torch.Tensor | slice) -> SlotEpisodes:
        pick = lambda x: None if x is None else x[index]  # noqa: E731
        return SlotEpisodes(
            *(pick(x) for x in (self.slots, self.actions, self.proprio, self.states, self.contacts))
        )


def _initial_positions(e: int, k: int, radius: float, g: torch.Generator) -> torch.Tensor:
    """Non-overlapping starts: distinct cells of a jittered grid. Returns (E, K, 2)."""
    side = 1
    while side * side < k or 1.0 / side < 2 * radius * 1.05:
        side += 1
        if 1.0 / side < 2 * radius * 1.05:
            raise ValueError(f"{k} discs of radius {radius} do not fit in the unit box")
    cell = 1.0 / side
    cells = torch.rand(e, side * side, generator=g).argsort(dim=1)[:, :k]  # (E, K)
    centre = torch.stack([(cells % side + 0.5) * cell, (cells // side + 0.5) * cell], dim=-1)
    jitter = (torch.rand(e, k, 2, generator=g) * 2 - 1) * (cell / 2 - radius * 1.02)
    return centre + jitter


def _simulate(cfg: SyntheticConfig, g: torch.Generator):
    e, k, length, r = cfg.n_episodes, cfg.n_objects, cfg.episode_len, cfg.radius
    pos = _initial_positions(e, k, r, g)
    angle = torch.rand(e, k, generator=g) * 2 * torch.pi
    speed = cfg.speed * (0.5 + torch.rand(e, k, generator=g))
    vel = torch.stack([angle.cos(), angle.sin()], dim=-1) * speed.unsqueeze(-1)  # (E, K, 2)
    mass = 0.5 + 1.5 * torch.rand(e, k, generator=g)  # (E, K)
    attrs = torch.rand(e, k, 3, generator=g) * 2 - 1
    actions = None
    if cfg.with_agent:
        raw = torch.randn(e, length, 2, generator=g)
        actions = torch.zeros_like(raw)
        for t in range(length):  # smoothed random walk in [-1, 1]^2
            prev = actions[:, t - 1] if t else torch.zeros(e, 2)
            actions[:, t] = (0.8 * prev + 0.45 * raw[:, t]).clamp(-1, 1)
    eye = torch.eye(k, dtype=torch.bool)
    dt = 1.0 / _SUBSTEPS
    states, contacts = [], []
    for t in range(length):
        states.append(torch.cat([pos, vel], dim=-1))
        touched = torch.zeros(e, k, k, dtype=torch.bool)
        for _ in range(_SUBSTEPS):
            diff = pos.unsqueeze(2) - pos.unsqueeze(1)  # (E, K, K, 2): i minus j
            dist = diff.norm(dim=-1).clamp_min(1e-9)
            overlap = (2 * r - dist).clamp_min(0).masked_fill(eye, 0)  # (E, K, K)
            touched |= overlap > 0
            force = (_STIFFNESS * overlap / dist).unsqueeze(-1) * diff  # pushes i away from j
            vel = vel + force.sum(dim=2) / mass.unsqueeze(-1) * dt
            if actions is not None:
                # The agent's velocity relaxes toward the commanded one (action x speed).
                vel[:, 0] += (actions[:, t] * cfg.speed - vel[:, 0]) * 0.3 * dt
            pos = pos + vel * dt
            low, high = pos < r, pos > 1 - r  # reflect off the walls
            pos = torch.where(low, 2 * r - pos, torch.where(high, 2 * (1 - r) - pos, pos))
            vel = torch.where(low | high, -vel, vel)
        contacts.append(touched)
    states = torch.stack(states, dim=1)  # (E, L, K, 4)
    return states, torch.stack(contacts, dim=1), mass, attrs, actions


def make_synthetic(cfg: SyntheticConfig, slot_dim: int) -> SlotEpisodes:
    """Simulate ``cfg.n_episodes`` episodes and encode them as slots. Deterministic in cfg.seed."""
    g = torch.Generator().manual_seed(cfg.seed)
    states, contacts, mass, attrs, actions = _simulate(cfg, g)
    e, length, k, _ = states.shape
    pos = states[..., :2] * 2 - 1  # centred in [-1, 1]
    vel = states[..., 2:] / cfg.speed  # ~unit scale
    static = torch.cat([mass.unsqueeze(-1) - 1.25, attrs], dim=-1)  # (E, K, 4)
    feats = torch.cat([pos, vel, static.unsqueeze(1).expand(e, length, k, 4)], dim=-1)
    encoder = torch.randn(_FEATURES, slot_dim, generator=g) / _FEATURES**0.5
    slots = feats @ encoder  # (E, L, K, D)
    if cfg.noise > 0:
        slots = slots + cfg.noise * torch.randn(slots.shape, generator=g)
    proprio = None
    if cfg.with_agent:
        agent = torch.cat([pos[:, :, 0], vel[:, :, 0]], dim=-1)  # (E, L, 4), agent = object 0
        proprio = (agent - agent.mean((0, 1))) / agent.std((0, 1)).clamp_min(1e-6)
    # Random slot order per episode: the predictor must not rely on slot positions.
    order = torch.rand(e, k, generator=g).argsort(dim=1)  # (E, K)
    gather = order[:, None, :, None]
    slots = slots.gather(2, gather.expand(e, length, k, slot_dim))
    states = states.gather(2, gather.expand(e, length, k, 4))
    oi = order[:, None, :, None].expand(e, length, k, k)
    contacts = contacts.gather(2, oi).gather(3, order[:, None, None, :].expand(e, length, k, k))
    return SlotEpisodes(slots.float(), actions, proprio, states.float(), contacts)
