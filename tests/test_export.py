"""Export to ONNX and the robot-side runtime: parity with torch, manifests, bad files, fallback."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import onnx
import pytest
import torch

from vla_rft.contract.config import to_dict
from vla_rft.contract.image import IMAGE_FIT, fit_square
from vla_rft.contract.manifest import (
    ACTION_RANGE_KEY,
    EMBODIMENT_KEY,
    INSTRUCTIONS_KEY,
    ONNX_METADATA_KEY,
    POLICY_CONFIG_KEY,
    POLICY_ENGINE,
    POLICY_ONNX,
    Manifest,
    ManifestError,
    read_manifest,
    sha256_file,
    write_manifest,
)
from vla_rft.data.normalization import NormStats
from vla_rft.export.export_policy import export_policy
from vla_rft.export.export_policy import main as export_main
from vla_rft.export.export_world_model import export_world_model
from vla_rft.export.onnx_export import PARITY_ATOL
from vla_rft.models.checkpoint import (
    CheckpointError,
    CheckpointIntegrityError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from vla_rft.models.policy import PolicyConfig, VLAPolicy
from vla_rft.models.world_model.configuration_world_model import WorldModelConfig
from vla_rft.models.world_model.modeling_world_model import WorldModel, load_world_model
from vla_rft.runtime.exported_policy import ExportedPolicy
from vla_rft.runtime.loader import load_policy
from vla_rft.runtime.onnx_session import ModelFileError, ModelIntegrityError, OnnxModel
from vla_rft.runtime.tensorrt_session import EngineMismatchError, check_engine_manifest
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.runtime.world_model_session import OnnxWorldModel

INSTRUCTIONS = ("push the puck to the goal", "reach the goal")


TRAINED_FOR = {"name": "metaworld-sawyer", "state_names": ["a", "b", "c", "d"],
               "action_names": ["e", "f", "g", "h"]}  # fmt: skip


@pytest.fixture(scope="module")
def policy_checkpoint(tmp_path_factory):
    """A small, randomly initialised policy saved as the trainer saves it."""
    torch.manual_seed(0)
    config = PolicyConfig(
        image_size=32,
        vision_channels=(8, 16),
        width=32,
        heads=2,
        decoder_layers=1,
        instruction_dim=16,
    )
    rng = np.random.default_rng(0)
    stats = NormStats.compute(rng.normal(size=(50, 4)), rng.normal(0.2, 0.5, size=(50, 4)))
    embeddings = {t: rng.standard_normal(16).astype(np.float32) for t in INSTRUCTIONS}
    run = tmp_path_factory.mktemp("policy_run")
    save_checkpoint(
        run,
        1,
        VLAPolicy(config),
        {},
        stats.to_dict(),
        "data-hash",
        extra={
            POLICY_CONFIG_KEY: to_dict(config),
            INSTRUCTIONS_KEY: {t: e.tolist() for t, e in embeddings.items()},
            ACTION_RANGE_KEY: [-1.0, 1.0],
            EMBODIMENT_KEY: TRAINED_FOR,
        },
    )
    return run


@pytest.fixture(scope="module")
def package(policy_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "policy-test"
    export_policy(policy_checkpoint, out)  # as `vla-rft export --no-text-encoder`: no tokenizer
    return out


def _obs(rng, instruction=INSTRUCTIONS[0], size=32):
    return {
        "image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "state": rng.normal(size=4).astype(np.float32),
        "instruction": instruction,
    }


def test_onnx_matches_torch_on_fresh_inputs(policy_checkpoint, package):
    manifest = read_manifest(package / POLICY_ONNX)
    assert manifest.embodiment == TRAINED_FOR  # the policy node checks its robot against it
    assert load_policy(package, backend="onnxruntime").spec.embodiment == TRAINED_FOR
    assert manifest.extra["parity_max_abs_diff"] <= PARITY_ATOL
    assert manifest.data_fingerprint == "data-hash" and len(manifest.checkpoint_sha256) == 64
    assert [s.name for s in manifest.inputs] == ["image", "instruction_embedding", "state"]
    assert manifest.inputs[0].shape == ("batch", 3, 32, 32)
    onnx_policy = load_policy(package, backend="onnxruntime")
    torch_policy = TorchPolicy.from_checkpoint(policy_checkpoint)
    rng = np.random.default_rng(7)
    for instruction in INSTRUCTIONS:
        obs = _obs(rng, instruction, size=48)  # a camera of another size is resized by both
        a, b = onnx_policy.infer(obs), torch_policy.infer(obs)
        assert a["action"].shape == (8, 4)
        np.testing.assert_allclose(a["action_normalized"], b["action_normalized"], atol=PARITY_ATOL)
        np.testing.assert_allclose(a["action"], b["action"], atol=PARITY_ATOL)
        assert np.all(np.abs(a["action"]) <= 1.0)


def test_a_package_exported_with_fewer_flow_steps_runs_exactly_those(
    policy_checkpoint, package, tmp_path
):
    """`vla-rft export --flow-steps 3`: the graph integrates the flow in 3 Euler steps (fewer
    nodes, less time), equal to the checkpoint run with 3 steps and not to the 10-step one; the
    manifest says 3, and `vla-rft eval --flow-steps 3` evaluates the same thing in torch."""
    import onnx

    fast = tmp_path / "fast"
    export_policy(policy_checkpoint, fast, flow_steps=3)
    assert read_manifest(fast / POLICY_ONNX).extra[POLICY_CONFIG_KEY]["flow_steps"] == 3
    nodes = {p: len(onnx.load(str(p / POLICY_ONNX)).graph.node) for p in (fast, package)}
    assert nodes[fast] < 0.6 * nodes[package], nodes
    rng = np.random.default_rng(3)
    obs = _obs(rng)
    three = TorchPolicy.from_checkpoint(policy_checkpoint, flow_steps=3).infer(obs)
    got = load_policy(fast, backend="onnxruntime").infer(obs)
    np.testing.assert_allclose(
        got["action_normalized"], three["action_normalized"], atol=PARITY_ATOL
    )
    ten = load_policy(package, backend="onnxruntime").infer(obs)
    assert np.abs(ten["action_normalized"] - got["action_normalized"]).max() > 10 * PARITY_ATOL


def test_the_package_declares_how_frames_are_fitted_and_fits_a_640x480_camera(package):
    assert read_manifest(package / POLICY_ONNX).extra["image_fit"] == IMAGE_FIT
    policy = load_policy(package, backend="onnxruntime")
    rng = np.random.default_rng(3)
    wide = {**_obs(rng), "image": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)}
    fitted = {**wide, "image": fit_square(wide["image"], 32)}
    np.testing.assert_array_equal(policy.infer(wide)["action"], policy.infer(fitted)["action"])
    squashing = OnnxModel(package / POLICY_ONNX, kind="policy")
    manifest = squashing.manifest
    squashing.manifest = dataclasses.replace(manifest, extra={**manifest.extra, "image_fit": "x"})
    with pytest.raises(ModelFileError, match="frames are fitted with 'x'; this runtime implements"):
        ExportedPolicy(squashing, policy.instructions, "onnxruntime")


def test_onnx_batch_dimension_is_dynamic(package):
    model = OnnxModel(package / POLICY_ONNX, kind="policy")
    rng = np.random.default_rng(0)
    feeds = {
        "image": rng.uniform(-1, 1, (5, 3, 32, 32)),
        "instruction_embedding": rng.normal(size=(5, 16)),
        "state": rng.normal(size=(5, 4)),
    }
    assert model.run(feeds)["action_chunk"].shape == (5, 8, 4)
    with pytest.raises(ValueError, match=r"input 'image' must have shape \['batch', 3, 32, 32\]"):
        model.run({**feeds, "image": rng.normal(size=(5, 3, 16, 16))})


def test_unknown_instruction_without_text_encoder_is_a_clear_error(package):
    policy = load_policy(package, backend="onnxruntime")
    with pytest.raises(ModelFileError, match=r"text_encoder\.onnx: no such model file"):
        policy.infer(_obs(np.random.default_rng(0), "open the window"))
    with pytest.raises(ValueError, match="instruction is empty"):
        policy.infer(_obs(np.random.default_rng(0), "  "))


def test_corrupted_and_mismatched_files_are_refused(package, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(package, broken)
    onnx_file = broken / POLICY_ONNX
    onnx_file.write_bytes(onnx_file.read_bytes()[:5000])
    with pytest.raises(ModelIntegrityError, match="content differs from the sha256"):
        load_policy(broken, backend="onnxruntime")
    record = json.loads((broken / "policy.json").read_text())
    (broken / "policy.json").write_text(json.dumps({**record, "file_sha256": None}))
    with pytest.raises(ModelFileError, match="ONNX Runtime cannot load it"):
        load_policy(broken, backend="onnxruntime")

    swapped = tmp_path / "swapped"
    shutil.copytree(package, swapped)
    record = json.loads((swapped / "policy.json").read_text())
    record["data_fingerprint"] = "another-data-set"
    (swapped / "policy.json").write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match="does not match the one inside it"):
        load_policy(swapped, backend="onnxruntime")

    record["schema_version"] = 42
    (swapped / "policy.json").write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match="unknown manifest schema version 42"):
        OnnxModel(swapped / POLICY_ONNX)

    with pytest.raises(ModelFileError, match="not a model package"):
        load_policy(tmp_path, backend="onnxruntime")
    with pytest.raises(ModelFileError, match="or --backend torch for a training checkpoint"):
        load_policy(tmp_path)  # auto: what an operator gets for `--policy-model runs/policy/x`
    with pytest.raises(ModelFileError, match="holds a 'policy', expected 'text_encoder'"):
        OnnxModel(package / POLICY_ONNX, kind="text_encoder")


def test_engine_for_another_gpu_is_refused_and_the_loader_falls_back(package, tmp_path, caplog):
    built = {"tensorrt_version": "10.3.0", "gpu": "NVIDIA H100 80GB HBM3"}
    here = {"tensorrt_version": "10.3.0", "gpu": "NVIDIA GeForce RTX 4090"}
    with pytest.raises(EngineMismatchError, match="gpu: built for 'NVIDIA H100 80GB HBM3', this"):
        check_engine_manifest(tmp_path / "policy.engine", built, here)
    check_engine_manifest(tmp_path / "policy.engine", built, dict(built))

    with_engine = tmp_path / "with_engine"
    shutil.copytree(package, with_engine)
    (with_engine / POLICY_ENGINE).write_bytes(b"an engine from another machine")
    manifest = read_manifest(with_engine / POLICY_ONNX)
    write_manifest(  # as build-engine writes it, with the engine file's own sha256
        with_engine / POLICY_ENGINE,
        dataclasses.replace(manifest, extra={**manifest.extra, "engine": built}),
    )
    with caplog.at_level(logging.WARNING):
        policy = load_policy(with_engine, backend="auto")
    assert policy.backend.startswith("onnxruntime")
    assert "falling back to ONNX Runtime" in caplog.text
    assert policy.infer(_obs(np.random.default_rng(0)))["action"].shape == (8, 4)


def test_manifest_round_trip_and_bad_manifests():
    m = Manifest(kind="policy", inputs=(), outputs=(), image_size=64, extra={"a": 1})
    assert Manifest.from_json(m.to_json()) == m
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json("{", "x.json")
    with pytest.raises(ManifestError, match="malformed"):
        Manifest.from_json(json.dumps({"schema_version": 1, "kind": "policy"}), "x.json")


@pytest.mark.slow
def test_text_encoder_export_matches_torch(tmp_path):
    from vla_rft.export.export_policy import export_text_encoder
    from vla_rft.models.policy.text_encoder import SentenceEncoder
    from vla_rft.runtime.exported_policy import onnx_instruction_cache

    manifest = export_text_encoder(tmp_path)
    assert manifest.extra["parity_max_abs_diff"] <= PARITY_ATOL
    cache = onnx_instruction_cache(tmp_path, known={})
    reference = SentenceEncoder()
    for text in ("open the top drawer", "push the red puck to the goal"):
        np.testing.assert_allclose(cache(text), reference(text), atol=1e-5)


@pytest.fixture(scope="module")
def world_model_package(tmp_path_factory):
    """A small world model with random weights (an untrained one ignores its actions), exported."""
    torch.manual_seed(0)
    config = WorldModelConfig(image_size=16, channels=(8, 16), dynamics_blocks=1, action_embed=8)
    model = WorldModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    rng = np.random.default_rng(0)
    stats = NormStats.compute(rng.normal(size=(50, 4)), rng.normal(0.2, 0.5, size=(50, 4)))
    root = tmp_path_factory.mktemp("world_model")
    save_checkpoint(root / "run", 3, model, {"model": to_dict(config)}, stats.to_dict(), "data")
    manifests = export_world_model(root / "run", root / "package")
    return root, manifests


def test_world_model_export_rolls_out_like_torch(world_model_package):
    root, manifests = world_model_package
    assert {m.kind for m in manifests.values()} == {"world_model_encode", "world_model_step"}
    assert all(m.extra["parity_max_abs_diff"] <= PARITY_ATOL for m in manifests.values())
    model, ckpt = load_world_model(root / "run")
    stats = NormStats.from_dict(ckpt.norm_stats)
    rng = np.random.default_rng(5)
    context = rng.integers(0, 256, (3, 1, 16, 16, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (3, 6, 4)).astype(np.float32)  # robot units
    expected = model.rollout(context, stats.action.normalize(actions)[:, None])[:, 0].numpy()
    world = OnnxWorldModel(root / "package")
    got = world.rollout(context, actions)
    assert got.shape == (3, 6, 16, 16, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    other = world.rollout(context, -actions)  # the exported step follows the actions
    assert np.abs(other - got).max() > 10 * PARITY_ATOL


def test_world_model_package_refuses_bad_input_and_mixed_files(world_model_package, tmp_path):
    root, _ = world_model_package
    world = OnnxWorldModel(root / "package")
    context = np.zeros((1, 1, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        world.rollout(context.astype(np.float32), np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="finite"):
        world.rollout(context, np.full((1, 2, 4), np.nan))
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "package", mixed)
    step = json.loads((mixed / "world_model_step.json").read_text())
    step["checkpoint_sha256"] = "0" * 64
    (mixed / "world_model_step.json").write_text(json.dumps(step))
    with pytest.raises(ModelFileError, match="does not match"):
        OnnxWorldModel(mixed)


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset : offset + 4] = bytes(b ^ 0xFF for b in data[offset : offset + 4])
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_a_model_file_are_refused_and_old_exports_load_with_a_warning(
    package, tmp_path, caplog
):
    flipped = tmp_path / "flipped"
    shutil.copytree(package, flipped)
    _flip(flipped / POLICY_ONNX, 16 * 1024)  # inside a weight: ONNX Runtime would load it
    damaged = (flipped / POLICY_ONNX).read_bytes()
    with pytest.raises(ModelIntegrityError, match=r"policy\.onnx: content differs .* policy\.json"):
        load_policy(flipped, backend="onnxruntime")
    with pytest.raises(ModelIntegrityError):
        OnnxModel(flipped / POLICY_ONNX)
    assert (flipped / POLICY_ONNX).read_bytes() == damaged  # refused, not "repaired"

    older = tmp_path / "older"  # an export from before the file hash was recorded
    shutil.copytree(package, older)
    record = json.loads((older / "policy.json").read_text())
    assert record.pop("file_sha256") == sha256_file(package / POLICY_ONNX)
    (older / "policy.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING):
        policy = load_policy(older, backend="onnxruntime")
    assert "records no sha256" in caplog.text
    assert policy.infer(_obs(np.random.default_rng(0)))["action"].shape == (8, 4)


def test_flipped_checkpoint_weights_are_refused_by_every_loader(policy_checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(policy_checkpoint, run)
    ckpt_dir = latest_checkpoint(run)
    _flip(ckpt_dir / "model.safetensors", 8 * 1024)  # inside tensor data: safetensors loads it
    with pytest.raises(CheckpointIntegrityError, match=r"model\.safetensors: content differs"):
        load_checkpoint(run)
    with pytest.raises(CheckpointIntegrityError):
        load_policy(run, backend="torch")
    assert export_main(["--policy", str(run), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out" / POLICY_ONNX).exists()


def test_broken_records_are_named_errors_that_name_the_file(policy_checkpoint, package, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(policy_checkpoint, run)
    record_file = latest_checkpoint(run) / "checkpoint.json"
    record = json.loads(record_file.read_text())
    no_step = {k: v for k, v in record.items() if k != "step"}
    record_file.write_text(json.dumps(no_step))
    with pytest.raises(CheckpointError, match=r"checkpoint\.json: .*'step' missing"):
        load_checkpoint(run)
    assert export_main(["--policy", str(run), "--out", str(tmp_path / "out")]) == 2

    record["extra"][INSTRUCTIONS_KEY] = list(record["extra"][INSTRUCTIONS_KEY].values())
    record_file.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"instruction_embeddings must map .* got a list"):
        TorchPolicy.from_checkpoint(run)

    not_utf8 = tmp_path / "not_utf8"
    shutil.copytree(package, not_utf8)
    text = (not_utf8 / "policy.json").read_bytes()
    (not_utf8 / "policy.json").write_bytes(b"\xff" + text[1:])
    with pytest.raises(ModelFileError, match=r"policy\.json: not valid JSON"):
        load_policy(not_utf8, backend="onnxruntime")

    listed = tmp_path / "listed"  # a package whose manifest (both copies) holds a list
    shutil.copytree(package, listed)
    manifest = read_manifest(listed / POLICY_ONNX)
    embeddings = list(manifest.extra[INSTRUCTIONS_KEY].values())
    manifest = dataclasses.replace(
        manifest, extra={**manifest.extra, INSTRUCTIONS_KEY: embeddings}, file_sha256=None
    )
    model = onnx.load(str(listed / POLICY_ONNX))
    onnx.helper.set_model_props(model, {ONNX_METADATA_KEY: manifest.to_json()})
    onnx.save(model, str(listed / POLICY_ONNX))
    write_manifest(listed / POLICY_ONNX, manifest)
    with pytest.raises(ModelFileError, match=r"policy\.onnx: instruction_embeddings must map"):
        load_policy(listed, backend="onnxruntime")
