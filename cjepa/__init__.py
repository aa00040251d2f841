"""cjepa: C-JEPA world models over object slots.

The library imports with torch alone; Ray, MLflow and Optuna are used only by
``cjepa.distributed``.
"""

__version__ = "0.1.0"
