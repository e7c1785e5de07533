"""A word-level tokenizer built from a corpus, for models trained from scratch (no download needed)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "[CLS]", "[SEP]", "[MASK]"]
_SPLIT = pre_tokenizers.Whitespace()  # words and runs of punctuation; white space (newlines too) is dropped


def words(text: str) -> list[str]:
    return [w for w, _ in _SPLIT.pre_tokenize_str(text)]


def build_word_tokenizer(texts: Iterable[str], min_freq: int = 1) -> PreTrainedTokenizerFast:
    """Vocabulary = special tokens, then words by descending frequency (ties alphabetical): deterministic."""
    counts = Counter(w for t in texts for w in words(t))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if c >= min_freq and w not in vocab:
            vocab[w] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = _SPLIT
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
