"""Continual-learning methods. Importing this package registers every method in ``METHODS``."""
from . import ewc, freeze, inc_lora, migu, mtl, o_lora, recurrent_kif, replay, seq, tasl, vr_mcl  # noqa: F401  (registration side effect)
from .base import METHODS, Method, Stage, create_method, register

__all__ = ["METHODS", "Method", "Stage", "create_method", "register"]
