"""Episodes (rosbag2 MCAP), the training data set, and expert data collection."""

from vla_rft.data.dataset import EpisodeIndex, WindowConfig, WindowDataset, build_datasets
from vla_rft.data.episode import Episode, EpisodeChecksumError, EpisodeError, EpisodeMeta
from vla_rft.data.episode_store import (
    EpisodeWriter,
    list_episodes,
    list_partial_episodes,
    read_episode,
    read_episode_meta,
    recover_episode,
    recover_partial_episodes,
    write_episode,
)
from vla_rft.data.normalization import NormStats

__all__ = [
    "Episode",
    "EpisodeChecksumError",
    "EpisodeError",
    "EpisodeIndex",
    "EpisodeMeta",
    "EpisodeWriter",
    "NormStats",
    "WindowConfig",
    "WindowDataset",
    "build_datasets",
    "list_episodes",
    "list_partial_episodes",
    "read_episode",
    "read_episode_meta",
    "recover_episode",
    "recover_partial_episodes",
    "write_episode",
]
