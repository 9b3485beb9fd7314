"""vla_rft: VLA policies improved by reinforcement fine-tuning in a learned world model."""

__version__ = "0.1.0"
