"""How a generative backbone turns an example's prompt into token ids: the chat template, and truncation that keeps
what the model needs to answer.

Truncation. A prompt that does not fit its budget loses the end of its *passage* (``Example.passage``: the
sentence, review or SuperNI input), never the instruction, the option list or the answer cue around it. A prompt
without a known passage (a bare ``{prompt, answer}`` record) keeps its end, where the answer cue is. The same
function shapes training and evaluation prompts, with the same budget: ``model.max_length`` less the room for the
answer (``model.max_new_tokens``), so the model is evaluated on exactly the inputs it was trained on.

Chat template. An instruct model answers a raw prompt differently from one in its chat format (SmolLM2-135M-Instruct
answered 17 of 20 raw dbpedia prompts with its end token at once). ``model.chat_template: on`` puts the prompt in a
user turn and the answer in the assistant turn that follows (the answer ends with the template's end-of-turn token,
the tokenizer's EOS); ``auto`` does so for an instruct model whose tokenizer has a template; ``off`` keeps the
papers' plain prompts. An empty prompt (language-model pre-training text) is never wrapped.
"""
from __future__ import annotations

from transformers import PreTrainedTokenizerBase

SENTINEL = "\x00PROMPT\x00"
INSTRUCT_HINTS = ("instruct", "chat", "-it")


def wants_chat_template(setting: str, tokenizer: PreTrainedTokenizerBase, instruct: bool | None = None) -> bool:
    """``setting`` on / off / auto; auto: the tokenizer has a template and the model is an instruct model (the named
    model says so, or its name contains instruct / chat / -it)."""
    if setting == "off" or not getattr(tokenizer, "chat_template", None):
        return False
    if setting == "on":
        return True
    if instruct is None:
        name = str(getattr(tokenizer, "name_or_path", "")).lower()
        instruct = any(h in name for h in INSTRUCT_HINTS)
    return instruct


class PromptShaper:
    """Token ids of prompts (and answers) for one tokenizer: the template's fixed parts around a fitted prompt."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, chat: bool = False):
        self.tokenizer, self.chat = tokenizer, chat
        self.prefix: list[int] = []
        self.suffix: list[int] = []
        if chat:
            rendered = self.render(SENTINEL)
            if SENTINEL not in rendered:
                raise ValueError("the tokenizer's chat template does not include the user's message")
            before, after = rendered.split(SENTINEL)
            self.prefix, self.suffix = self.ids(before), self.ids(after)

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def render(self, prompt: str) -> str:
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def prompt_ids(self, prompt: str, passage: tuple[int, int] | None, budget: int) -> list[int]:
        """The ids of ``prompt`` (in the chat template when on) in at most ``budget`` tokens, cut as the module says."""
        if not (self.chat and prompt):
            return fit(self.ids, prompt, passage, budget)
        whole = self.ids(self.render(prompt))  # exactly the tokenizer's own rendering when it fits
        if len(whole) <= budget:
            return whole
        inner = max(budget - len(self.prefix) - len(self.suffix), 0)
        return self.prefix + fit(self.ids, prompt, passage, inner) + self.suffix

    def fit_text(self, text: str, passage: tuple[int, int] | None, budget: int) -> str:
        """``text`` (no template) cut as ``prompt_ids`` cuts a prompt to ``budget`` tokens, back as text; ``text``
        itself when it fits (so a text that fits is never re-decoded)."""
        kept = fit(self.ids, text, passage, budget)
        return text if kept == self.ids(text) else self.tokenizer.decode(kept)

    def answer_ids(self, answer: str, eos: int) -> list[int]:
        """An answer's ids and the end token. Plain prompts end in a cue ("Answer:"), so the answer starts with a
        space; in the chat template it starts the assistant's turn."""
        return self.ids(answer if self.chat else " " + answer) + [eos]


def fit(ids, prompt: str, passage: tuple[int, int] | None, budget: int) -> list[int]:
    """``prompt``'s ids in at most ``budget`` tokens: whole if it fits; else the passage (characters
    ``passage[0]:passage[1]``) loses its end and what is around it stays; without a passage, the end stays."""
    whole = ids(prompt)
    if len(whole) <= budget:
        return whole
    if budget <= 0:
        return []
    if passage is not None:
        start, end = passage
        head, body, tail = ids(prompt[:start]), ids(prompt[start:end]), ids(prompt[end:])
        room = budget - len(head) - len(tail)
        if room >= 0:
            return head + body[:room] + tail
        return (head + tail)[-budget:]  # instruction and cue alone overflow: the cue stays
    return whole[-budget:]
