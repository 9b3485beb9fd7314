"""Torch models of the pipeline: the world model (`world_model/`) and the policy (`policy/`)."""
