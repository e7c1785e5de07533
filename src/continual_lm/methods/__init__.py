"""Continual-learning methods. Importing this package registers every method in ``METHODS``."""
from . import (ewc, freeze, grad_projection, inc_lora, l2p, lamol, lfpt5, lwf, migu, moe_lora, mtl,  # noqa: F401
               o_lora, recurrent_kif, replay, sapt, seq, task_vector, tasl, vr_mcl)  # registration side effect
from .base import METHODS, Method, Stage, create_method, register, method_label, split_method_spec

__all__ = ["METHODS", "Method", "Stage", "create_method", "register", "method_label", "split_method_spec"]
