"""Training windows: shapes, padding, normalisation, split by episode, cache and refresh."""

from __future__ import annotations

import numpy as np
import pytest

from vla_rft.contract.image import IMAGE_FIT
from vla_rft.data.dataset import (
    CACHE_DIRNAME,
    EpisodeIndex,
    WindowConfig,
    WindowDataset,
    build_datasets,
)
from vla_rft.data.episode_store import write_episode
from vla_rft.data.normalization import NormStats


@pytest.fixture
def episode_dir(tmp_path, episode_factory):
    for i, steps in enumerate([10, 14, 7, 12]):
        write_episode(tmp_path, f"ep{i}", episode_factory(steps=steps, size=16, seed=i))
    return tmp_path


def test_windows_have_the_right_shapes_and_contents(episode_dir, episode_factory):
    config = WindowConfig(
        context_frames=2, action_horizon=5, future_frames=3, val_fraction=0.0, normalize=False
    )
    train, val, _ = build_datasets([episode_dir], config)
    assert val is None and len(train) == 10 + 14 + 7 + 12
    ep = episode_factory(steps=10, size=16, seed=0)
    w = train[0]  # episode ep0, step 0: context before the start repeats frame 0
    assert w["image"].shape == (2, 16, 16, 3) and w["image"].dtype == np.uint8
    np.testing.assert_array_equal(w["image"][0], ep.images[0])
    np.testing.assert_array_equal(w["image"][1], ep.images[0])
    np.testing.assert_array_equal(w["state"], ep.states[0])
    assert w["action"].shape == (5, 4) and not w["action_pad"].any()
    np.testing.assert_array_equal(w["action"], ep.actions[0:5])
    np.testing.assert_array_equal(w["future_image"], ep.images[1:4])
    assert w["instruction"] == ep.meta.instruction

    w = train[8]  # step 8 of 10: the chunk runs past the end and repeats the last action
    np.testing.assert_array_equal(w["image"], ep.images[7:9])
    np.testing.assert_array_equal(w["action_pad"], [False, False, True, True, True])
    np.testing.assert_array_equal(w["action"][2:], np.repeat(ep.actions[9:10], 3, axis=0))
    np.testing.assert_array_equal(w["future_pad"], [False, True, True])
    np.testing.assert_array_equal(w["future_image"][1], ep.images[9])
    assert train[10]["step"] == 0 and train[10]["episode_index"] == 1


def test_normalisation_uses_training_statistics(episode_dir):
    train, _, index = build_datasets([episode_dir], WindowConfig(val_fraction=0.0))
    raw = np.concatenate([e.states for e in index.episodes])
    np.testing.assert_allclose(train.stats.state.mean, raw.mean(0), rtol=1e-5)
    states = train.get_batch(np.arange(len(train)))["state"]
    np.testing.assert_allclose(states.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(states.std(0), 1, atol=1e-4)
    saved = NormStats.load(episode_dir / CACHE_DIRNAME / "stats.json")
    assert saved == train.stats
    actions = train.stats.action.unnormalize(train.get_batch(np.arange(3))["action"][:, 0])
    np.testing.assert_allclose(actions, index.episodes[0].actions[:3], atol=1e-5)


def test_split_is_by_episode_and_stable(episode_dir, episode_factory):
    index = EpisodeIndex(episode_dir)
    train_ids, val_ids = index.split(0.3)
    assert val_ids and set(train_ids).isdisjoint(val_ids)
    assert sorted(train_ids + val_ids) == list(range(4))
    val_names = {index.episodes[i].name for i in val_ids}
    write_episode(episode_dir, "ep9", episode_factory(steps=5, size=16, seed=9))
    assert index.refresh() == 1
    _, val_ids2 = index.split(0.3)
    assert val_names <= {index.episodes[i].name for i in val_ids2}, "old episodes keep their side"


def test_cache_is_reused_and_new_episodes_are_picked_up(episode_dir, episode_factory, monkeypatch):
    EpisodeIndex(episode_dir, image_size=8)
    assert len(list((episode_dir / CACHE_DIRNAME).glob(f"*-8-{IMAGE_FIT}.npz"))) == 4
    import vla_rft.data.dataset as dataset_module

    decoded = []
    real_read = dataset_module.read_episode
    monkeypatch.setattr(
        dataset_module, "read_episode", lambda p: decoded.append(p.name) or real_read(p)
    )
    write_episode(episode_dir, "ep4", episode_factory(steps=5, size=16, seed=4))
    index = EpisodeIndex(episode_dir, image_size=8)
    assert decoded == ["ep4"], "only the new episode is decoded"
    assert len(index) == 5 and index.episodes[0].images.shape[1:] == (8, 8, 3)
    fingerprint = index.fingerprint()
    write_episode(episode_dir, "ep5", episode_factory(steps=5, size=16, seed=5))
    assert index.refresh() == 1 and decoded == ["ep4", "ep5"]
    assert index.fingerprint() != fingerprint


def test_two_jobs_can_build_the_same_cache_at_once(episode_dir, monkeypatch):
    """Two jobs (a world-model and a policy run, or torchrun ranks) indexing the same new
    episodes at once: each writes its own temporary file, both renames succeed."""
    import threading

    import vla_rft.data.dataset as dataset_module

    both_written = threading.Barrier(2, timeout=10)
    real_savez = np.savez

    def savez_then_wait(file, **arrays):  # both writers have written before either renames
        real_savez(file, **arrays)
        both_written.wait()

    monkeypatch.setattr(dataset_module.np, "savez", savez_then_wait)
    sizes, errors = [], []

    def job():
        try:
            sizes.append(len(EpisodeIndex(episode_dir, image_size=8)))
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sizes == [4, 4]
    cache = episode_dir / CACHE_DIRNAME
    assert len(list(cache.glob(f"*-8-{IMAGE_FIT}.npz"))) == 4 and not list(cache.glob("*.tmp.npz"))


def test_a_failed_cache_write_leaves_no_temporary_file(episode_dir, monkeypatch):
    """A full disk costs the cache entry (with a warning), not the run; Ctrl-C in the middle of a
    write leaves nothing half-written behind."""
    import vla_rft.data.dataset as dataset_module

    real_savez = np.savez

    def savez_then_fail(error):
        def savez(file, **arrays):
            real_savez(file, **arrays)  # the temporary file exists when the failure comes
            raise error

        return savez

    cache = episode_dir / CACHE_DIRNAME
    monkeypatch.setattr(dataset_module.np, "savez", savez_then_fail(OSError("No space left")))
    with pytest.warns(UserWarning, match=r"episode cache not written for ep\d: No space left"):
        index = EpisodeIndex(episode_dir, image_size=8)
    assert len(index) == 4 and not list(cache.glob("*"))
    monkeypatch.setattr(dataset_module.np, "savez", savez_then_fail(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        EpisodeIndex(episode_dir, image_size=8)
    assert not list(cache.glob("*"))


def test_unreadable_episodes_are_skipped_with_the_reason(episode_dir):
    (episode_dir / "ep1" / "ep1.mcap").write_bytes(b"not an mcap file")
    index = EpisodeIndex(episode_dir)
    assert len(index) == 3 and "cannot read the bag" in index.skipped["ep1"]


def test_batches_cover_an_epoch(episode_dir):
    train, _, index = build_datasets([episode_dir], WindowConfig(val_fraction=0.0))
    seen = np.concatenate(
        [b["step"] + train.ep_start[b["episode_index"]] for b in train.iter_batches(8, seed=1)]
    )
    assert sorted(seen.tolist()) == list(range(len(train)))
    with pytest.raises(ValueError, match="at least one episode"):
        WindowDataset(index, [], WindowConfig(), train.stats)


def test_config_is_validated():
    with pytest.raises(ValueError, match="action_horizon must be >= 1"):
        WindowConfig(action_horizon=0)
    with pytest.raises(ValueError, match="val_fraction"):
        WindowConfig(val_fraction=1.0)


def _dataset_cli(capsys, root) -> tuple[int, str]:
    from vla_rft.cli import main

    rc = main(["-q", "dataset", str(root)])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_an_episode_without_its_mcap_is_skipped_and_counted(episode_dir, capsys):
    (episode_dir / "ep1" / "ep1.mcap").unlink()
    index = EpisodeIndex(episode_dir)
    assert len(index) == 3 and "no .mcap file" in index.skipped["ep1"]
    rc, out = _dataset_cli(capsys, episode_dir)
    assert rc == 0 and "1 unreadable" in out and "skipped ep1: no .mcap file" in out, out


def test_an_episode_with_flipped_image_bytes_is_skipped_and_counted(
    episode_dir, episode_factory, capsys
):
    mcap = episode_dir / "ep2" / "ep2.mcap"
    data = bytearray(mcap.read_bytes())
    at = data.find(episode_factory(steps=7, size=16, seed=2).images[4].tobytes()[:32])
    data[at + 5 : at + 8] = bytes(b ^ 0xFF for b in data[at + 5 : at + 8])
    mcap.write_bytes(bytes(data))
    index = EpisodeIndex(episode_dir)
    assert [e.name for e in index.episodes] == ["ep0", "ep1", "ep3"]
    assert "checksum" in index.skipped["ep2"]
    rc, out = _dataset_cli(capsys, episode_dir)
    assert rc == 0 and "1 unreadable" in out and "skipped ep2:" in out, out
