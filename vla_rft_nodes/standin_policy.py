"""A stand-in policy: a tiny ONNX graph run by ONNX Runtime, for the graph without a trained model.

It checks the robot side end to end (bringup, recording, timing the control loop) before
`vla-rft export` has produced a policy: the same inputs (image, state, instruction), a real ONNX
Runtime session, an action chunk out. Its actions mean nothing.

    image uint8 [1, H, W, 3] -> mean colour / 255 [1, 3] ┐
    state float32 [1, S] ────────────────────────────────┴─ concat -> Gemm -> tanh -> [1, K, A]

    vla-rft bringup --sim --standin-policy          # builds runs/standin/policy.onnx if absent
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vla_rft.contract.constants import ACTION, OBS_IMAGE, OBS_INSTRUCTION, OBS_STATE, SIM_EMBODIMENT
from vla_rft.contract.embodiment import load_embodiment
from vla_rft.contract.instruction import check_instruction
from vla_rft.contract.policy import PolicySpec

EMBODIMENT_METADATA = "vla_rft.embodiment"
"""ONNX metadata key of the robot the stand-in was built for (`EmbodimentSpec.summary()`)."""
STANDIN_PATH = Path("runs/standin/policy.onnx")
"""Where `vla-rft bringup --standin-policy` keeps the stand-in model (outside the model
registry, `models/`, which holds only registered versions)."""
_OPSET = 17


def build_standin_onnx(
    path: str | Path,
    embodiment: str | Path = SIM_EMBODIMENT,
    horizon: int = 8,
    seed: int = 0,
    scale: float = 0.5,
    bias: float = 0.0,
) -> Path:
    """Write the stand-in graph for the robot `embodiment` (a spec name or file) to `path`
    (bias=float('nan') makes a policy that outputs NaN)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec = load_embodiment(embodiment)
    state_dim, action_dim = spec.state_dim, spec.action_dim
    rng = np.random.default_rng(seed)
    weight = (rng.normal(size=(3 + state_dim, horizon * action_dim)) * scale).astype(np.float32)
    bias_arr = np.full(horizon * action_dim, bias, np.float32)
    nodes = [
        helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["image_f"], ["colour"], axes=[1, 2], keepdims=0),
        helper.make_node("Div", ["colour", "c255"], ["colour01"]),
        helper.make_node("Concat", ["colour01", "state"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "weight", "bias"], ["flat"]),
        helper.make_node("Tanh", ["flat"], ["flat_tanh"]),
        helper.make_node("Reshape", ["flat_tanh", "chunk_shape"], ["action_chunk"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(255.0, np.float32), "c255"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(bias_arr, "bias"),
        numpy_helper.from_array(np.array([-1, horizon, action_dim], np.int64), "chunk_shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "vla_rft_standin_policy",
        [
            helper.make_tensor_value_info("image", TensorProto.UINT8, [1, "H", "W", 3]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, state_dim]),
        ],
        [
            helper.make_tensor_value_info(
                "action_chunk", TensorProto.FLOAT, [1, horizon, action_dim]
            )
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 8
    helper.set_model_props(model, {EMBODIMENT_METADATA: json.dumps(spec.summary())})
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


class StandinPolicy:
    """infer({'image', 'state', 'instruction'}) -> {'action': float32 [K, A]}; an ONNX session."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no stand-in policy (build_standin_onnx makes one)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.state_dim = self.session.get_inputs()[1].shape[1]
        horizon, action_dim = self.session.get_outputs()[0].shape[1:]
        embodiment = self.session.get_modelmeta().custom_metadata_map.get(EMBODIMENT_METADATA)
        self.spec = PolicySpec(
            self.state_dim, action_dim, horizon, image_size=0,
            embodiment=json.loads(embodiment) if embodiment else None,
        )  # fmt: skip

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        check_instruction(obs[OBS_INSTRUCTION])
        image = np.asarray(obs[OBS_IMAGE])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        state = np.asarray(obs[OBS_STATE], np.float32).reshape(1, -1)
        if state.shape[1] != self.state_dim:
            raise ValueError(f"state must have {self.state_dim} entries, got {state.shape[1]}")
        chunk = self.session.run(None, {"image": image[None], "state": state})[0]
        return {ACTION: chunk[0]}

    def reset(self) -> None:
        """Stateless."""


def load_standin_policy(model_path: str | Path, backend: str = "auto") -> StandinPolicy:
    """The policy node's factory for the stand-in (`policy_factory` parameter)."""
    if backend not in ("auto", "onnxruntime"):
        raise ValueError(f"the stand-in policy runs on onnxruntime, not {backend!r}")
    return StandinPolicy(model_path)
