"""Evaluation: world-model rollouts against real frames, policies in closed loop, image metrics."""
