"""Sequential fine-tuning: train on each task in turn, nothing else (SeqLoRA with LoRA, SEQ with full FT)."""
from .base import Method, register


@register
class Sequential(Method):
    name = "seq"
    description = "Sequential fine-tuning (SeqLoRA under LoRA, SEQ under full fine-tuning): the lower bound."
