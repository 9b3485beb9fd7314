"""The GPU check's CPU-side parts (bench/gpu_check.py, scripts/gpu/): its command line, the
carried folder and its size limit, the parity check run for real against ONNX Runtime (passing
and violated), the JSON table, and backends missing here reported as skipped stages. A small
network keeps the exports fast; what runs is the code the GPU machine runs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_inference
import gpu_check

from vla_rft.contract.manifest import CHUNK_OUTPUT, POLICY_ONNX, read_manifest, write_manifest
from vla_rft.export.onnx_export import PARITY_ATOL
from vla_rft.runtime.onnx_session import OnnxModel

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
SMALL = {"vision_channels": (8, 16), "width": 32, "heads": 2, "decoder_layers": 1}
"""PolicyConfig fields of a small network: the same graph, exported in a second or two."""


FAKE_TENSORRT = "tensorrt-0.0.1-py3-none-any.whl"


def write_fake_tensorrt_wheel(folder: Path) -> Path:
    """A wheel of a `tensorrt` module that has a version and nothing else: once installed the
    check finds it, and skips TensorRT because no CUDA device can be queried (CI has none)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = "tensorrt-0.0.1.dist-info"
    files = {
        "tensorrt/__init__.py": '__version__ = "0.0.1"\n',
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: tensorrt\nVersion: 0.0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / FAKE_TENSORRT, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return folder / FAKE_TENSORRT


@pytest.fixture(scope="module")
def carry(tmp_path_factory):
    """A carried folder as `pack` writes it, for one small policy at SIZE px and one wheel."""
    root = tmp_path_factory.mktemp("gpu")
    write_fake_tensorrt_wheel(root / "wheels")
    original = bench_inference.make_package

    def small(config, root, *args, **kwargs):
        return original(dataclasses.replace(config, **SMALL), root, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench_inference, "make_package", small)
        config = gpu_check.PackConfig(root / "gpu_carry", (SIZE,), root / "wheels")
        manifest = gpu_check.pack(config)
    return config.carry, manifest


def _perturbed(carry: Path, dest: Path) -> Path:
    """A copy of `carry` whose policy.onnx has noise added to its weight matrices (its
    manifest and the carried folder's re-hashed, so it loads): the checkpoint no longer
    matches it."""
    shutil.copytree(carry, dest)
    path = dest / f"pkg{SIZE}" / POLICY_ONNX
    model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.dtype == np.float32 and weights.ndim >= 2:
            noisy = weights + 0.1 * rng.standard_normal(weights.shape).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(model, str(path))
    write_manifest(path, read_manifest(path))
    carried = json.loads((dest / gpu_check.CARRY_MANIFEST).read_text())
    for changed in path.parent.iterdir():  # re-hashed, or `run` refuses the altered files
        data = changed.read_bytes()
        entry = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        carried["files"][str(changed.relative_to(dest))] = entry
    (dest / gpu_check.CARRY_MANIFEST).write_text(json.dumps(carried))
    return dest


@pytest.fixture
def one_torch_thread():
    """torch on one thread, as ONNX Runtime runs here: two threads on shared cores are slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _missing_gpu_backends(monkeypatch) -> None:
    """As on a machine without TensorRT, onnxruntime-gpu or a CUDA device, whatever is here."""
    import onnxruntime
    import torch

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_the_scripts_explain_themselves_and_bad_arguments_are_usage_errors(tmp_path, capsys):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    for script, words in (("gpu_check.sh", "--backends"), ("pack.sh", "--wheels")):
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "gpu" / script), "--help"],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "usage: gpu_check.py" in done.stdout and words in done.stdout

    args = gpu_check.parse_args(["run", "--sizes", "64,224", "--backends", "tensorrt"])
    assert args.config.sizes == (64, 224) and args.config.backends == ("tensorrt",)
    assert gpu_check.parse_args(["pack"]).config.sizes == (64, 224)
    for bad in (["run", "--backends", "tensorrt,cuda"], ["pack", "--sizes", "six"], []):
        with pytest.raises(SystemExit) as exit_:
            gpu_check.parse_args(bad)
        assert exit_.value.code == 2
    assert "unknown backends ['cuda']" in capsys.readouterr().err
    assert gpu_check.main(["run", "--carry", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "run scripts/gpu/pack.sh first" in capsys.readouterr().err


def test_the_script_installs_the_carried_wheels_and_leaves_its_json_and_log_in_out(carry, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "CARRY": str(carry[0])}
    env.update(TMPDIR=str(tmp_path), PYTHONPATH="")
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu" / "gpu_check.sh"), "--backends",
         "tensorrt,onnxruntime-cpu", "--iters", "3", "--warmup", "1"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "installing 1 carried wheel(s)" in done.stdout
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["environment"]["tensorrt"] == "0.0.1"  # the carried wheel, found
    [opened] = [s for s in result["stages"] if s["stage"] == "open" and s["backend"] == "tensorrt"]
    assert opened["status"] == "skipped"  # no CUDA device (or no cuda-python) to build for
    assert "not installed" not in opened["detail"]
    assert [r["backend"] for r in result["rows"]] == ["onnxruntime-cpu"]
    assert "| image | backend | precision |" in (tmp_path / "gpu_check.log").read_text()


def test_pack_writes_the_packages_checkpoints_wheels_and_a_manifest_under_the_limit(carry):
    folder, manifest = carry
    expected = {
        f"pkg{SIZE}/policy.onnx", f"pkg{SIZE}/policy.json", f"ckpt{SIZE}/model.safetensors",
        f"ckpt{SIZE}/checkpoint.json", f"wheels/{FAKE_TENSORRT}",
    }  # fmt: skip
    assert set(manifest["files"]) == expected
    assert json.loads((folder / gpu_check.CARRY_MANIFEST).read_text()) == manifest
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert manifest["carry_bytes"] == sum(e["bytes"] for e in manifest["files"].values())
    assert manifest["repo_bytes"] > 0 and manifest["limit_bytes"] == 64 * 2**20
    assert manifest["fits"] and manifest["carry_bytes"] + manifest["repo_bytes"] < 64 * 2**20
    assert manifest["sizes"] == [SIZE] and set(manifest["not_carried"]) == {
        "tensorrt",
        "onnxruntime-cuda",
    }
    assert read_manifest(folder / f"pkg{SIZE}" / POLICY_ONNX).image_size == SIZE


def test_pack_refuses_a_folder_over_the_limit_and_one_it_did_not_write(tmp_path):
    repo_mib = gpu_check.travelling_bytes(gpu_check.REPO) / 2**20
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "big-1.0-py3-none-any.whl").write_bytes(bytes(4096))
    config = gpu_check.PackConfig(tmp_path / "carry", (), tmp_path / "wheels", repo_mib + 0.001)
    with pytest.raises(gpu_check.CarryTooLarge, match="over the"):
        gpu_check.pack(config)
    assert json.loads((config.carry / gpu_check.CARRY_MANIFEST).read_text())["fits"] is False
    roomy = gpu_check.PackConfig(config.carry, (), config.wheels, repo_mib + 0.01)
    assert gpu_check.pack(roomy)["fits"]  # a folder pack wrote is replaced

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not written by pack"):
        gpu_check.pack(gpu_check.PackConfig(tmp_path / "mine", ()))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_run_refuses_a_carried_file_changed_since_packing(carry, tmp_path, capsys):
    folder = shutil.copytree(carry[0], tmp_path / "carry")
    (folder / f"ckpt{SIZE}" / "checkpoint.json").write_text("{}")
    assert gpu_check.main(["run", "--carry", str(folder), "--out", str(tmp_path)]) == 2
    assert f"sha256 differs): ckpt{SIZE}/checkpoint.json" in capsys.readouterr().err
    assert not (tmp_path / "gpu_check.json").exists()


def test_parity_holds_for_a_second_session_and_fails_for_perturbed_weights(carry, tmp_path):
    folder, _ = carry
    package = folder / f"pkg{SIZE}"
    feeds, expected = gpu_check.reference_chunks(package, 4)
    assert len({f["image"].tobytes() for f in feeds}) == 4  # several distinct inputs

    second = OnnxModel(package / POLICY_ONNX, "cpu", threads=2)
    record = {}
    worst = gpu_check.check_parity(
        expected, lambda f: second.run(f)[CHUNK_OUTPUT], feeds, PARITY_ATOL, record
    )
    assert worst <= 1e-6 and record == {"max_abs_diff": worst, "ok": True}

    bad = OnnxModel(_perturbed(folder, tmp_path / "bad") / f"pkg{SIZE}" / POLICY_ONNX, "cpu")
    record = {}
    with pytest.raises(
        gpu_check.ParityError, match=r"max \|diff\| vs onnxruntime-cpu over 4 inputs"
    ):
        gpu_check.check_parity(
            expected, lambda f: bad.run(f)[CHUNK_OUTPUT], feeds, gpu_check.GPU_ATOL, record
        )
    assert record["ok"] is False and record["max_abs_diff"] > gpu_check.GPU_ATOL

    def overflowing(feed):
        return np.full_like(expected[0], np.inf)

    with pytest.raises(gpu_check.ParityError, match="is nan"):
        gpu_check.check_parity(expected, overflowing, feeds, gpu_check.GPU_ATOL)


def test_missing_backends_are_skipped_stages_and_the_table_has_its_fields(
    carry, tmp_path, monkeypatch, capsys, one_torch_thread
):
    _missing_gpu_backends(monkeypatch)
    config = gpu_check.CheckConfig(
        carry[0], tmp_path, backends=tuple(gpu_check.BACKENDS), iters=3, warmup=1, parity_inputs=2
    )
    assert gpu_check.run_check(config) == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {(s["stage"], s["backend"]): s for s in result["stages"]}
    assert {s["image"] for s in result["stages"]} == {SIZE}
    for backend, why in (
        ("tensorrt", "TensorRT is not installed"),
        ("onnxruntime-cuda", "has no CUDAExecutionProvider"),
        ("torch-cuda", "sees no CUDA device"),
    ):
        assert status["open", backend]["status"] == "skipped"
        assert why in status["open", backend]["detail"]
        assert status["parity", backend]["status"] == status["latency", backend]["status"]
        assert status["latency", backend]["status"] == "skipped"
    assert "far over the 64 MiB" in status["open", "tensorrt"]["detail"]
    assert all(s["status"] == "ok" for s in result["stages"] if "cpu" in s["backend"])
    assert result["failed"] == [] and result["environment"]["tensorrt"] is None

    [parity] = result["parity"]
    assert parity["backend"] == "torch-cpu" and parity["ok"] and parity["inputs"] == 2
    assert parity["max_abs_diff"] <= parity["atol"] == gpu_check.CPU_ATOL == PARITY_ATOL
    rows = {r["backend"]: r for r in result["rows"]}
    assert set(rows) == {"onnxruntime-cpu", "torch-cpu"}
    speed_up = "speed-up vs onnxruntime-cpu (p50)"
    for row in rows.values():
        assert set(row) == {"image", "backend", "precision", "p50_ms", "p99_ms", speed_up}
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["precision"] == "fp32"
    assert rows["onnxruntime-cpu"][speed_up] == 1.0
    printed = capsys.readouterr().out
    assert "| image | backend | precision | p50_ms | p99_ms |" in printed
    assert "| stage | image | backend | status | seconds | detail |" in printed


def test_a_parity_violation_and_a_broken_backend_are_failures_and_the_check_goes_on(
    carry, tmp_path, monkeypatch, one_torch_thread
):
    def broken(package, checkpoint, work):
        raise OSError("libcudnn.so.9: cannot open shared object file")

    monkeypatch.setitem(
        gpu_check.BACKENDS, "broken", gpu_check.Backend("fp16", gpu_check.GPU_ATOL, broken)
    )
    config = gpu_check.CheckConfig(
        _perturbed(carry[0], tmp_path / "carry"),
        tmp_path,
        backends=("broken", "torch-cpu", "onnxruntime-cpu"),
        iters=3,
        warmup=1,
        parity_inputs=2,
    )
    assert gpu_check.run_check(config) == 1
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["failed"] == [f"open broken {SIZE} px", f"parity torch-cpu {SIZE} px"]
    status = {(s["stage"], s["backend"]): s for s in result["stages"]}
    assert "OSError: libcudnn.so.9" in status["open", "broken"]["detail"]
    assert status["parity", "broken"]["status"] == "skipped"
    assert "ParityError: max |diff|" in status["parity", "torch-cpu"]["detail"]
    assert status["latency", "torch-cpu"]["status"] == "ok"  # measured all the same
    assert [r["backend"] for r in result["rows"]] == ["torch-cpu", "onnxruntime-cpu"]
    assert result["parity"][0]["ok"] is False
