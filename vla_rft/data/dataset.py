"""Training windows over directories of episodes.

EpisodeIndex decodes each episode once into a cache (`<root>/.cache/`, one .npz per episode and
image size) and picks up new episodes on `refresh()` without touching the others. WindowDataset
cuts training windows out of the cached arrays:

  image          uint8   [C, H, W, 3]  context frames t-C+1 .. t (repeats frame 0 before the start)
  state          float32 [S]           state at t (normalised)
  action         float32 [K, A]        actions t .. t+K-1, the action chunk (normalised)
  action_pad     bool    [K]           True where the chunk runs past the episode end
  expert_action  float32 [K, A]        the scripted expert's clean actions at t .. t+K-1 where the
                                       episode recorded them (EXPERT_ACTIONS_KEY), else = action
  future_image   uint8   [F, H, W, 3]  frames t+1 .. t+F for world-model training
  future_pad     bool    [F]           True where those run past the end (the last frame repeats)
  instruction    str
  camera_images  uint8   [N, H, W, 3]  frames at t of the N further cameras of WindowConfig.cameras
Padding repeats the last action and frame, and the masks say where.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_rft.contract.constants import EXPERT_ACTIONS_KEY
from vla_rft.contract.image import IMAGE_FIT, fit_square
from vla_rft.data.episode import EpisodeError
from vla_rft.data.episode_store import episode_mcap, list_episodes, read_episode
from vla_rft.data.normalization import NormStats

CACHE_DIRNAME = ".cache"
_CAMERA = "camera_"
"""Prefix of a further camera's frames in a cache file."""


@dataclass(frozen=True)
class WindowConfig:
    """How windows are cut from episodes."""

    context_frames: int = 1
    """Frames up to and including step t given as context."""
    action_horizon: int = 8
    """Actions in the chunk (the paper uses 8)."""
    future_frames: int = 0
    """Frames after t returned for world-model training (0: none)."""
    image_size: int | None = None
    """Square size images are resized to in the cache; None keeps the recorded size."""
    val_fraction: float = 0.1
    """Share of episodes held out for validation (chosen by a hash of the episode name)."""
    normalize: bool = True
    """Return states and actions normalised with the training statistics."""
    cameras: tuple[str, ...] = ()
    """Further cameras (beside the main one) whose frames at t are returned as camera_images;
    every episode must have recorded them."""

    def __post_init__(self):
        if self.context_frames < 1:
            raise ValueError(f"context_frames must be >= 1, got {self.context_frames}")
        if self.action_horizon < 1:
            raise ValueError(f"action_horizon must be >= 1, got {self.action_horizon}")
        if self.future_frames < 0:
            raise ValueError(f"future_frames must be >= 0, got {self.future_frames}")
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be within 8..1024, got {self.image_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras repeat: {list(self.cameras)}")


@dataclass
class CachedEpisode:
    """One episode's arrays as the data set uses them."""

    name: str
    images: np.ndarray
    """uint8 [T, H, W, 3]"""
    states: np.ndarray
    """float32 [T, S]"""
    actions: np.ndarray
    """float32 [T, A]"""
    meta: dict
    """EpisodeMeta as a dict."""
    cameras: dict[str, np.ndarray]
    """Further camera name -> uint8 [T, H, W, 3]."""


def _source_key(path: Path) -> dict:
    mcap = episode_mcap(path)
    st = mcap.stat()
    return {"file": mcap.name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_cached_episode(path: Path, cache_dir: Path, image_size: int | None) -> CachedEpisode:
    """Arrays of the episode at `path`, decoded once and reused while the file is unchanged."""
    key = _source_key(path)
    cache_file = (
        cache_dir / f"{path.name}-{f'{image_size}-{IMAGE_FIT}' if image_size else 'native'}.npz"
    )
    if cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                if json.loads(str(z["key"])) == key:
                    return CachedEpisode(
                        path.name,
                        z["images"],
                        z["states"],
                        z["actions"],
                        json.loads(str(z["meta"])),
                        {k.removeprefix(_CAMERA): z[k] for k in z.files if k.startswith(_CAMERA)},
                    )
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt from the episode
    episode = read_episode(path)
    images = fit_square(episode.images, image_size)
    cameras = {name: fit_square(f, image_size) for name, f in episode.camera_images.items()}
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer: training jobs (or torchrun ranks) indexing the same episodes
    # at once each write a whole file, and the last rename wins with identical content.
    tmp = cache_file.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp.npz")
    try:
        np.savez(
            tmp,
            key=json.dumps(key),
            meta=json.dumps(episode.meta.to_dict()),
            images=images,
            states=episode.states,
            actions=episode.actions,
            **{_CAMERA + name: frames for name, frames in cameras.items()},
        )
        tmp.replace(cache_file)
    except OSError as err:  # a full disk costs the cache entry, not the run
        warnings.warn(f"episode cache not written for {path.name}: {err}", stacklevel=2)
    finally:
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind, even on Ctrl-C
    meta = episode.meta.to_dict()
    return CachedEpisode(path.name, images, episode.states, episode.actions, meta, cameras)


def _val_score(name: str) -> float:
    """A stable number in [0, 1) per episode name: the split never reshuffles old episodes."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 2**32


class EpisodeIndex:
    """All complete episodes under one or more directories, decoded through the cache."""

    def __init__(self, roots, image_size: int | None = None, progress: bool = False):
        self.roots = [Path(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots)]
        for root in self.roots:
            if not root.is_dir():
                raise FileNotFoundError(f"episode directory {root} does not exist")
        self.image_size = image_size
        self.progress = progress
        self.episodes: list[CachedEpisode] = []
        self.skipped: dict[str, str] = {}
        """Episodes that could not be read: path -> reason."""
        self.refresh()

    def refresh(self) -> int:
        """Load episodes that appeared since the last call; returns how many were added."""
        known = {e.name for e in self.episodes} | set(self.skipped)
        new = [p for root in self.roots for p in list_episodes(root) if p.name not in known]
        for path in tqdm(new, desc="indexing episodes", disable=not self.progress or not new):
            try:
                self.episodes.append(
                    load_cached_episode(path, path.parent / CACHE_DIRNAME, self.image_size)
                )
            except EpisodeError as err:
                self.skipped[path.name] = err.reason
        self.episodes.sort(key=lambda e: e.name)
        return len(new)

    def __len__(self) -> int:
        return len(self.episodes)

    def fingerprint(self) -> str:
        """sha256 over episode names and their file keys: names the data a model was trained on."""
        h = hashlib.sha256()
        for root in self.roots:
            for path in list_episodes(root):
                if path.name in self.skipped:
                    continue
                h.update(path.name.encode())
                h.update(json.dumps(_source_key(path), sort_keys=True).encode())
        return h.hexdigest()

    def embodiment(self) -> dict:
        """The robot the episodes were recorded on, as `EmbodimentSpec.summary()` names it (name,
        state and action names; and `camera_topics`, each recorded camera's topic); a trained
        model records it. ValueError if the episodes come from robots that differ in name, state
        or action names."""
        robots = {
            (e.meta["robot"], tuple(e.meta["state_names"]), tuple(e.meta["action_names"]))
            for e in self.episodes
        }
        if len(robots) != 1:
            found = "; ".join(f"{r} (state {list(s)}, action {list(a)})" for r, s, a in robots)
            raise ValueError(f"the episodes come from {len(robots)} robots: {found}")
        robot, states, actions = robots.pop()
        topics = {k: v for e in self.episodes for k, v in e.meta.get("cameras", {}).items()}
        found = {"name": robot, "state_names": list(states), "action_names": list(actions)}
        return {**found, "camera_topics": topics} if topics else found

    def split(self, val_fraction: float) -> tuple[list[int], list[int]]:
        """Episode indices (train, val), by a stable hash of each name.

        With two or more episodes and val_fraction > 0, at least one goes to validation.
        """
        scores = [_val_score(e.name) for e in self.episodes]
        val = [i for i, s in enumerate(scores) if s < val_fraction]
        if not val and val_fraction > 0 and len(scores) >= 2:
            val = [int(np.argmin(scores))]
        train = [i for i in range(len(scores)) if i not in set(val)]
        return train, val

    def stats(self, episode_ids: list[int]) -> NormStats:
        """Normalisation statistics over the given episodes."""
        if not episode_ids:
            raise ValueError("no episodes to compute statistics from")
        states = np.concatenate([self.episodes[i].states for i in episode_ids])
        actions = np.concatenate([self.episodes[i].actions for i in episode_ids])
        return NormStats.compute(states, actions)


def expert_actions(episode: CachedEpisode) -> np.ndarray:
    """The expert's clean actions [T, A] the episode recorded, or its executed actions."""
    recorded = episode.meta.get("extra", {}).get(EXPERT_ACTIONS_KEY)
    if recorded is None:
        return episode.actions
    clean = np.asarray(recorded, np.float32)
    if clean.shape != episode.actions.shape:
        raise ValueError(
            f"episode {episode.name}: {EXPERT_ACTIONS_KEY} has shape {list(clean.shape)}, its "
            f"actions {list(episode.actions.shape)}"
        )
    return clean


class WindowDataset:
    """Windows over some of an index's episodes; numpy arrays out (torch DataLoader-ready)."""

    def __init__(
        self, index: EpisodeIndex, episode_ids: list[int], config: WindowConfig, stats: NormStats
    ):
        if not episode_ids:
            raise ValueError("the window data set needs at least one episode")
        self.config = config
        self.stats = stats
        eps = [index.episodes[i] for i in episode_ids]
        shapes = {e.images.shape[1:] for e in eps}
        if len(shapes) > 1:
            raise ValueError(f"episodes have different image sizes {shapes}; set image_size")
        self.episode_names = [e.name for e in eps]
        self.instructions = [e.meta["instruction"] for e in eps]
        self.tasks = [e.meta["task"] for e in eps]
        lengths = np.array([len(e.images) for e in eps])
        self.ep_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.ep_end = self.ep_start + lengths  # exclusive
        self.images = np.concatenate([e.images for e in eps])  # [N, H, W, 3]
        for e in eps:
            missing = [name for name in config.cameras if name not in e.cameras]
            if missing:
                raise ValueError(
                    f"episode {e.name} has no camera {missing[0]!r} (it recorded "
                    f"{list(e.cameras) or 'only its main camera'})"
                )
        self.camera_images = [
            np.concatenate([e.cameras[name] for e in eps]) for name in config.cameras
        ]  # per camera [N, H, W, 3]
        states = np.concatenate([e.states for e in eps])
        actions = np.concatenate([e.actions for e in eps])
        expert = np.concatenate([expert_actions(e) for e in eps])
        if config.normalize:
            states, actions = stats.state.normalize(states), stats.action.normalize(actions)
            expert = stats.action.normalize(expert)
        self.states, self.actions, self.expert_actions = states, actions, expert
        self.has_expert_actions = np.array(
            [EXPERT_ACTIONS_KEY in e.meta.get("extra", {}) for e in eps]
        )  # [episodes]
        self.window_episode = np.repeat(np.arange(len(eps)), lengths)  # [N]: one window per step

    def __len__(self) -> int:
        return len(self.window_episode)

    def get_batch(self, idx: np.ndarray) -> dict:
        """Windows for global step indices idx [B]; arrays carry a leading batch dimension."""
        idx = np.asarray(idx)
        ep = self.window_episode[idx]
        start, end = self.ep_start[ep][:, None], self.ep_end[ep][:, None] - 1
        c, k, f = self.config.context_frames, self.config.action_horizon, self.config.future_frames
        ctx = np.clip(idx[:, None] + np.arange(-c + 1, 1), start, None)  # [B, C]
        act = idx[:, None] + np.arange(k)  # [B, K]
        fut = idx[:, None] + np.arange(1, f + 1)  # [B, F]
        cameras = [c[idx] for c in self.camera_images]  # per camera [B, H, W, 3]
        return {
            **({"camera_images": np.stack(cameras, axis=1)} if cameras else {}),
            "image": self.images[ctx],
            "state": self.states[idx],
            "action": self.actions[np.minimum(act, end)],
            "action_pad": act > end,
            "expert_action": self.expert_actions[np.minimum(act, end)],
            "future_image": self.images[np.minimum(fut, end)],
            "future_pad": fut > end,
            "instruction": [self.instructions[e] for e in ep],
            "episode_index": ep,
            "step": idx - self.ep_start[ep],
        }

    def __getitem__(self, i: int) -> dict:
        batch = self.get_batch(np.array([i]))
        return {k: v[0] for k, v in batch.items()}

    def iter_batches(
        self, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False
    ):
        """One epoch of batches (dicts as `get_batch`)."""
        order = (
            np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        )
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for s in range(0, stop, batch_size):
            yield self.get_batch(order[s : s + batch_size])


def build_datasets(
    roots, config: WindowConfig, progress: bool = False, stats: NormStats | None = None
):
    """Index `roots`, split by episode, compute statistics on train; returns (train, val, index).

    The statistics are saved to `<first root>/.cache/stats.json`; `val` is None without
    validation episodes. Pass `stats` to keep a parent model's statistics when fine-tuning
    (its weights expect them); they are then not saved.
    """
    index = EpisodeIndex(roots, image_size=config.image_size, progress=progress)
    if not len(index):
        raise ValueError(f"no readable episodes under {', '.join(map(str, index.roots))}")
    train_ids, val_ids = index.split(config.val_fraction)
    if stats is None:
        stats = index.stats(train_ids)
        cache = index.roots[0] / CACHE_DIRNAME
        cache.mkdir(parents=True, exist_ok=True)
        stats.save(cache / "stats.json")
    train = WindowDataset(index, train_ids, config, stats)
    val = WindowDataset(index, val_ids, config, stats) if val_ids else None
    return train, val, index
