"""Planning with a trained world model: CEM solver, goal cost, predictor adapter, MPC loop.

SPEC section 9. ``CEMSolver.solve`` (``plan``: its actions alone) optimises action blocks for a
batch of episodes against any cost (B, S, H, A) -> (B, S); ``WorldModelCost`` turns a
``SlotPredictor`` and goal latents into such a cost; ``RecedingHorizon`` replans with warm starts.
Needs torch only (scipy for N > 6 slots).
"""

from cjepa.planning.cem import CEMConfig, CEMSolver, PlanResult, plan
from cjepa.planning.cost import slot_goal_cost
from cjepa.planning.mpc import RecedingHorizon, shift_plan
from cjepa.planning.world_model import WorldModelCost

__all__ = [
    "CEMConfig",
    "CEMSolver",
    "PlanResult",
    "RecedingHorizon",
    "WorldModelCost",
    "plan",
    "shift_plan",
    "slot_goal_cost",
]
