"""Continual-learning methods. Importing this package registers every method in ``METHODS``."""
from . import freeze, mtl, recurrent_kif, replay, seq  # noqa: F401  (registration side effect)
from .base import METHODS, Method, Stage, create_method, register

__all__ = ["METHODS", "Method", "Stage", "create_method", "register"]
