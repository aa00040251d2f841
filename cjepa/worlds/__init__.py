"""Simulators that make data: ``collide`` (CLEVRER-style 2-D collisions) and ``pusht``."""
