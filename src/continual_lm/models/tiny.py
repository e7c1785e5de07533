"""Small randomly initialised models built from Hugging Face config classes (tests, Biography)."""
from __future__ import annotations

import torch
from transformers import (BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                          PreTrainedModel, PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration)

from ..config import TinyModelSettings
from ..errors import ConfigError

ARCH_KIND = {"gpt": "causal", "llama": "causal", "t5": "seq2seq", "bert": "encoder"}


def build_tiny_model(tiny: TinyModelSettings, kind: str, tokenizer: PreTrainedTokenizerBase, max_length: int,
                     seed: int) -> PreTrainedModel:
    if ARCH_KIND[tiny.arch] != kind:
        raise ConfigError(f"model.tiny.arch: {tiny.arch!r} is a {ARCH_KIND[tiny.arch]} model but model.kind is {kind!r}")
    if tiny.width % tiny.heads:
        raise ConfigError(f"model.tiny: width {tiny.width} is not divisible by heads {tiny.heads}")
    torch.manual_seed(seed)  # initialisation is part of what the seed fixes
    ids = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    w, n, h = tiny.width, tiny.layers, tiny.heads
    if tiny.arch == "gpt":
        cfg = GPT2Config(n_positions=max_length, n_embd=w, n_layer=n, n_head=h, resid_pdrop=0.0, embd_pdrop=0.0,
                         attn_pdrop=0.0, **ids)
        return GPT2LMHeadModel(cfg)
    if tiny.arch == "llama":
        cfg = LlamaConfig(hidden_size=w, intermediate_size=4 * w, num_hidden_layers=n, num_attention_heads=h,
                          num_key_value_heads=h, max_position_embeddings=max_length, tie_word_embeddings=True, **ids)
        return LlamaForCausalLM(cfg)
    if tiny.arch == "t5":
        cfg = T5Config(d_model=w, d_ff=4 * w, d_kv=w // h, num_layers=n, num_heads=h, dropout_rate=0.0,
                       decoder_start_token_id=tokenizer.pad_token_id, **ids)
        return T5ForConditionalGeneration(cfg)
    cfg = BertConfig(hidden_size=w, intermediate_size=4 * w, num_hidden_layers=n, num_attention_heads=h,
                     max_position_embeddings=max_length, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     **ids)
    return BertModel(cfg)
