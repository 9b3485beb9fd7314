"""Action-conditioned world model: `WorldModel.rollout(context_frames, actions) -> frames`."""

from vla_rft.models.world_model.configuration_world_model import WorldModelConfig
from vla_rft.models.world_model.modeling_world_model import WorldModel, load_world_model

__all__ = ["WorldModel", "WorldModelConfig", "load_world_model"]
