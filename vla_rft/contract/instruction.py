"""Instructions: what a valid one is, and how a model package's tokenizer.json turns them into
token ids (`tokenizers`, imported when a tokenizer is loaded; no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_TOKENS = 128
"""Longest tokenised instruction (all-MiniLM-L6-v2 was trained on 128 tokens); longer is cut."""


def check_instruction(text: object, max_chars: int | None = None) -> str:
    """The instruction, stripped; ValueError if it is not a non-empty string of at most
    `max_chars` characters (the message quotes only the start of a long one)."""
    if not isinstance(text, str):
        raise ValueError(f"the instruction must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise ValueError("the instruction is empty")
    if max_chars is not None and len(text) > max_chars:
        raise ValueError(
            f"the instruction is {len(text)} characters long (at most {max_chars}): "
            f"{text[:60]!r}..."
        )
    return text


class InstructionTokenizer:
    """Sentences -> (input_ids, attention_mask), int64 [B, L], padded to the longest."""

    def __init__(self, tokenizer_json: str | Path):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.no_padding()  # the bundled file pads every sentence to 128 tokens
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch([check_instruction(t) for t in texts])
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), length), np.int64)
        mask = np.zeros((len(texts), length), np.int64)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)], mask[i, : len(e.ids)] = e.ids, 1
        return ids, mask
