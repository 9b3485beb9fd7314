"""The whole loop: quickstart to a report and registered versions, resume, flywheel rounds on the
episodes the previous round recorded, the gate, the registry and the stage runner."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import write_eval_report

from vla_rft.contract.config import ConfigError
from vla_rft.data.episode_store import list_episodes, read_episode
from vla_rft.pipeline import flywheel, jobs, quickstart
from vla_rft.pipeline.config import DEFAULT_PIPELINE_CONFIG, load_pipeline_config
from vla_rft.pipeline.gate import gate
from vla_rft.pipeline.registry import (
    RegistryError,
    VersionRecord,
    current_version,
    list_versions,
    set_current,
    verify,
)
from vla_rft.pipeline.stages import PipelineState, Stage, run_stages

REPO = Path(__file__).resolve().parents[1]
DEBUG = str(REPO / "training" / "debug" / "pipeline.yaml")


# --- the stage runner ------------------------------------------------------------------------


def test_stages_resume_after_a_failure_and_redo_stages_whose_outputs_vanished(tmp_path):
    calls = []

    def make(name, fail=False):
        def run(done):
            calls.append(name)
            if fail:
                raise RuntimeError(f"{name} broke")
            out = tmp_path / f"{name}.txt"
            out.write_text(json.dumps(sorted(done)))
            return {"file": str(out)}

        return run

    stages = [Stage("a", "first", 1, make("a")), Stage("b", "second", 1, make("b", fail=True))]
    with pytest.raises(RuntimeError, match="b broke"):
        run_stages(tmp_path, stages, log=lambda _: None)
    state = PipelineState.load(tmp_path)
    assert state.stages["a"]["status"] == "done" and state.stages["b"]["status"] == "failed"
    assert "b broke" in state.stages["b"]["error"]
    stages[1] = Stage("b", "second", 1, make("b"))
    outputs = run_stages(tmp_path, stages, log=lambda _: None)
    assert calls == ["a", "b", "b"]  # a was not redone
    assert json.loads(Path(outputs["b"]["file"]).read_text()) == ["a"]  # b saw a's outputs
    Path(outputs["a"]["file"]).unlink()
    run_stages(tmp_path, stages, log=lambda _: None)
    assert calls == ["a", "b", "b", "a"]  # a's output vanished: redone; b's is still there


# --- the gate --------------------------------------------------------------------------------


def _report(successes: dict[str, list[bool]]) -> dict:
    episodes = [
        {"task": "reach-v3", "perturbation": p, "seed": 1000 + i, "success": s}
        for p, outcomes in successes.items()
        for i, s in enumerate(outcomes)
    ]
    return {"episodes": episodes}


def test_gate_refuses_a_regression_and_says_why():
    current = _report({"none": [True] * 8 + [False] * 2, "object": [True] * 5 + [False] * 5})
    better = _report({"none": [True] * 9 + [False], "object": [True] * 6 + [False] * 4})
    worse_on_object = _report({"none": [True] * 10, "object": [True] * 3 + [False] * 7})
    slightly_worse = _report({"none": [True] * 8 + [False] * 2, "object": [True] * 4 + [False] * 6})
    assert gate(current, better).promote
    decision = gate(current, worse_on_object, max_drop=0.05)
    assert not decision.promote
    assert any("object" in r and "-20 points" in r for r in decision.reasons)
    # within the allowed drop on each perturbation, but worse on average: refused too
    decision = gate(current, slightly_worse, max_drop=0.15)
    assert not decision.promote and any("average" in r for r in decision.reasons)
    # a tie with evidence passes: the two differ on some episodes, as often each way
    swapped = _report({"none": [False] + [True] * 8 + [False], "object": [True] * 5 + [False] * 5})
    decision = gate(current, swapped)
    assert decision.promote and decision.rows[0]["only_base"] == 1
    with pytest.raises(ValueError, match="same episodes"):
        gate(current, _report({"none": [True] * 10}))


@pytest.mark.parametrize(
    ("tasks", "success"),
    [(("door-open-v3", "window-open-v3", "button-press-topdown-v3"), [False, False]),
     (("reach-v3",), [True, False, True])],
    ids=["0%-vs-0%", "identical-episodes"],
)  # fmt: skip
def test_gate_refuses_a_comparison_without_evidence(tmp_path, tasks, success):
    """Same outcome in every paired episode (no discordant pair): the suite cannot tell the
    candidate from the current model, so nothing shows that it is not worse."""
    outcomes = {
        (t, p, 1000 + i): ok
        for t in tasks
        for p in ("none", "object")
        for i, ok in enumerate(success)
    }
    current, candidate = (
        json.loads(write_eval_report(tmp_path / n / "report.json", outcomes).read_text())
        for n in ("base", "rft")
    )
    decision = gate(current, candidate)
    assert not decision.promote
    (reason,) = decision.reasons
    n = 2 * len(tasks) * len(success)
    assert f"no evidence: the same outcome in all {n} paired episodes" in reason
    assert json.loads(json.dumps(decision.to_dict()))["reasons"] == [reason]  # as registered


# --- the whole loop --------------------------------------------------------------------------


@pytest.mark.slow
def test_quickstart_runs_to_a_report_with_registered_versions(debug_loop, dds, capsys):
    dirs, argv, rc = debug_loop
    assert rc == 0
    state = PipelineState.load(dirs["root"])
    assert [s["status"] for s in state.stages.values()] == ["done"] * 9
    report = json.loads((dirs["root"] / "report" / "report.json").read_text())
    assert {r["perturbation"] for r in report["comparison"]} == {"none"}
    html = (dirs["root"] / "report" / "report.html").read_text()
    assert "Closed-loop success" in html and "data:image/png;base64," in html
    versions = list_versions(dirs["models"])
    assert [v.version for v in versions] == ["v001", "v002"]
    assert versions[0].status == "promoted" and versions[1].parent == "v001"
    assert versions[1].gate["reasons"] and versions[1].status in ("promoted", "rejected")
    assert all(reason in html for reason in versions[1].gate["reasons"])
    assert current_version(dirs["models"]) == ("v002" if versions[1].gate["promote"] else "v001")
    assert (dirs["models"] / "current" / "policy.onnx").is_file()
    assert verify(dirs["models"], "v002") == []
    # the evaluation episodes crossed the node graph into the recorder
    recorded = list_episodes(dirs["data"] / "recorded" / "rft")
    assert len(recorded) == 2 and read_episode(recorded[0]).meta.source == "policy"
    # a second run finds everything done and does no work
    capsys.readouterr()
    assert quickstart.main(argv) == 0
    assert capsys.readouterr().out.count("done before") == 9


@pytest.mark.slow
def test_flywheel_rounds_learn_from_the_previous_rounds_recordings(debug_loop, dds, tmp_path):
    dirs, _, rc = debug_loop
    assert rc == 0
    models, before = dirs["models"], current_version(dirs["models"])
    common = ["--config", DEBUG, "-q", f"--models={models}", f"--data={dirs['data'] / 'fw'}",
              f"--root={dirs['root'] / 'fw'}"]  # fmt: skip
    # round 1 on the quickstart's recordings, with one broken episode among them
    source = tmp_path / "new"
    shutil.copytree(dirs["data"] / "recorded" / "rft", source)
    broken = sorted(p for p in source.iterdir() if p.is_dir())[0]
    mcap = next(broken.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    assert flywheel.main([*common, f"--episodes={source}"]) == 0
    v3 = VersionRecord.read(models / "v003")
    assert v3.parent == before and v3.gate["reasons"]
    assert current_version(models) == ("v003" if v3.gate["promote"] else before)
    (work,) = (dirs["root"] / "fw").iterdir()
    fine_tune = yaml.safe_load((work / "world_model" / "config.yaml").read_text())
    assert fine_tune["init_from"] == str(models / before / "checkpoints" / "world_model")
    assert (fine_tune["optim"]["steps"], fine_tune["optim"]["lr"], fine_tune["threads"]) == (
        2,
        3e-4,
        1,
    )
    assert yaml.safe_load((work / "rft" / "config.yaml").read_text())["optim"]["steps"] == 2
    left_out = json.loads((work / "report" / "report.json").read_text())["left_out"]
    assert list(left_out) == [broken.name]
    provenance_file = next((dirs["data"] / "fw").glob("*/provenance.json"))
    provenance = json.loads(provenance_file.read_text())
    assert len(provenance["episodes"]) == 1 and provenance["parent_version"] == before
    assert any(d.get("provenance") for d in v3.data)
    # the same episodes again, from v003 (the gate may have refused it: 0% vs 0% is no
    # evidence): nothing new to learn, and nothing registered
    set_current(models, "v003")
    assert flywheel.main([*common, f"--episodes={source}", "--root", str(tmp_path / "r")]) == 2
    assert [v.version for v in list_versions(models)][-1] == "v003"
    # round 2 on the episodes round 1 recorded while evaluating its candidate
    recorded = next((dirs["data"] / "fw").glob("*/recorded"))
    assert len(list_episodes(recorded)) == 2
    # round 2 from v003 (current, whether or not the gate promoted it)
    assert flywheel.main([*common, f"--episodes={recorded}"]) == 0
    v4 = VersionRecord.read(models / "v004")
    assert v4.parent == "v003" and v4.status in ("promoted", "rejected") and v4.gate["rows"]
    round1 = str(provenance_file.parent)
    assert sum(d["path"].startswith(round1) for d in v4.data) == 1  # round 1's data, once


def test_quickstart_gives_the_trainers_typed_configs(tmp_path, monkeypatch):
    """The recipes are loaded once; each stage changes run_dir, data and threads on the typed
    config, to exactly what those overrides on the recipe give."""
    from vla_rft.contract.config import load_config
    from vla_rft.pipeline import jobs
    from vla_rft.training.train_policy import TrainPolicyConfig
    from vla_rft.training.train_rft import TrainRFTConfig
    from vla_rft.training.train_world_model import TrainWorldModelConfig

    given = {}

    def fake(kind):
        def train(config, progress):
            given[kind] = config
            return f"{kind}-checkpoint"

        return train

    for kind in ("world_model", "policy", "rft"):
        monkeypatch.setattr(jobs, f"train_{kind}", fake(kind))
    root, data = tmp_path / "runs", tmp_path / "data"
    stages = quickstart.build_stages(DEBUG, [], root, data, tmp_path / "models", False)
    done = {}
    for stage in stages:
        if stage.name in ("world_model", "policy", "rft"):
            done[stage.name] = stage.run(done)
    episodes = data / "episodes"
    recipe = REPO / "training" / "debug"
    expected = {
        "world_model": load_config(
            TrainWorldModelConfig, recipe / "world_model.yaml",
            [f"run_dir={root / 'world_model'}", f"data.roots=[{episodes}]", "threads=1"],
        ),
        "policy": load_config(
            TrainPolicyConfig, recipe / "policy.yaml",
            [f"run_dir={root / 'policy'}", f"data.roots=[{episodes}]", "threads=1"],
        ),
        "rft": load_config(
            TrainRFTConfig, recipe / "rft.yaml",
            [f"run_dir={root / 'rft'}", f"data=[{episodes}]", "threads=1",
             "policy=policy-checkpoint", "world_model=world_model-checkpoint"],
        ),
    }  # fmt: skip
    assert given == expected


def test_registry_refuses_unknown_versions(tmp_path):
    with pytest.raises(RegistryError, match="not a registered version"):
        set_current(tmp_path, "v001")
    assert list_versions(tmp_path / "none") == [] and current_version(tmp_path) is None


@pytest.mark.parametrize("preset", ["debug", "cpu", "gpu", "quickstart"])
def test_every_recipe_loads_into_its_config(preset):
    from vla_rft.contract.config import load_config
    from vla_rft.pipeline.config import PipelineConfig
    from vla_rft.training.train_policy import TrainPolicyConfig
    from vla_rft.training.train_rft import TrainRFTConfig
    from vla_rft.training.train_world_model import TrainWorldModelConfig

    classes = {
        "world_model": TrainWorldModelConfig,
        "policy": TrainPolicyConfig,
        "rft": TrainRFTConfig,
        "pipeline": PipelineConfig,
    }
    found = sorted((REPO / "training" / preset).glob("*.yaml"))
    assert found
    for path in found:  # <kind>.yaml or a variant, <kind>_<variant>.yaml
        kind = next(k for k in classes if path.stem == k or path.stem.startswith(f"{k}_"))
        config = load_config(classes[kind], path)
        if isinstance(config, PipelineConfig):
            for recipe in (config.world_model_recipe, config.policy_recipe, config.rft_recipe):
                assert (REPO / recipe).is_file(), recipe


def test_registry_versions_statuses_rollback_and_tampering(tmp_path, capsys):
    import torch

    from vla_rft.models.checkpoint import save_checkpoint
    from vla_rft.pipeline import models_command
    from vla_rft.pipeline.registry import register

    package = tmp_path / "package"
    package.mkdir()
    (package / "policy.onnx").write_bytes(b"onnx bytes")
    ckpt = save_checkpoint(tmp_path / "run", 1, torch.nn.Linear(2, 2), {})
    models = tmp_path / "models"

    def add(**kw):
        return register(models, package, ckpt, ckpt, parent=None, data=[], metrics={}, **kw)

    assert add().status == "promoted" and current_version(models) == "v001"
    assert add(gate={"promote": False}, promote=False).status == "rejected"
    assert add(gate={"promote": True}, promote=False).status == "registered"
    assert current_version(models) == "v001"
    assert (models / "v002" / "checkpoints" / "policy" / "model.safetensors").is_file()
    assert not list(models.glob(".*partial"))
    # the gate rejected v002: promoting it asks for --force, then does it
    assert models_command.main(["promote", "v002", "--models", str(models)]) == 2
    assert "the gate rejected v002" in capsys.readouterr().err and current_version(models) == "v001"
    assert models_command.main(["promote", "v002", "--models", str(models), "--force"]) == 0
    assert current_version(models) == "v002"
    assert models_command.main(["list", "--models", str(tmp_path / "no-registry")]) == 2
    assert "not a model registry" in capsys.readouterr().err
    # a changed file: verify names it and promotion (a rollback to it) is refused
    (models / "v001" / "policy.onnx").write_bytes(b"tampered")
    assert verify(models, "v001") == ["policy.onnx"]
    capsys.readouterr()
    assert models_command.main(["verify", "all", "--models", str(models)]) == 1
    verified = capsys.readouterr().out
    assert "v001: changed files: ['policy.onnx']" in verified and "v002: intact" in verified
    capsys.readouterr()
    assert models_command.main(["promote", "v001", "--models", str(models)]) == 2
    assert "changed since registration" in capsys.readouterr().err
    assert current_version(models) == "v002"
    assert models_command.main(["list", "--models", str(models)]) == 0
    assert "| v002 | rejected |" in capsys.readouterr().out


def test_a_pipeline_config_finds_its_recipes_from_any_working_directory(tmp_path, monkeypatch):
    """`vla-rft flywheel` reuses the pipeline config a version was made with (an absolute path);
    its recipes are written relative to the checkout (training/debug/...). Run from another
    directory, they must still be found (they were not: 'recipe ... does not exist')."""
    monkeypatch.chdir(tmp_path)
    config = load_pipeline_config(DEBUG)
    for recipe in (config.world_model_recipe, config.policy_recipe, config.rft_recipe):
        assert Path(recipe).is_file() and Path(recipe).is_absolute(), recipe
    assert config.world_model_recipe == str(REPO / "training" / "debug" / "world_model.yaml")
    # the commands' default config, relative as they give it: it was refused outside the
    # checkout ("recipe training/quickstart/pipeline.yaml does not exist")
    default = load_pipeline_config(DEFAULT_PIPELINE_CONFIG)
    assert Path(default.policy_recipe) == REPO / "training" / "quickstart" / "policy.yaml"
    recipes = "".join(
        f"{name}_recipe: nowhere/{name}.yaml\n" for name in ("world_model", "policy", "rft")
    )
    (tmp_path / "mine.yaml").write_text(recipes)
    with pytest.raises(ConfigError, match=r"recipe nowhere/world_model\.yaml does not exist"):
        jobs.load_recipes(load_pipeline_config(tmp_path / "mine.yaml"))


# --- evaluation graphs side by side ------------------------------------------------------------


@pytest.mark.parametrize(
    ("episodes", "graphs", "shares"),
    [(10, 1, [(0, 10)]), (10, 2, [(0, 5), (5, 5)]), (7, 3, [(0, 3), (3, 2), (5, 2)]),
     (2, 4, [(0, 1), (1, 1)])],
)  # fmt: skip
def test_each_graph_gets_a_contiguous_share_of_the_seeds(episodes, graphs, shares):
    assert jobs.seed_shares(episodes, graphs) == shares


def test_graph_reports_merge_into_the_report_of_one_graph():
    """Two graphs' reports, each on its share of the seeds, merge into what one graph running
    every seed would report: same episodes in the same order, same summaries."""
    from vla_rft.rollout.report import EpisodeResult, build_report, merge_reports

    def meta(first, last, seconds):
        return {"policy": "p", "tasks": ["reach-v3", "push-v3"], "perturbations": ["none", "goal"],
                "seeds": [first, last], "seconds": seconds, "interrupted": None}  # fmt: skip

    episodes = [
        EpisodeResult(task, pert, seed, success=(seed + len(task) + len(pert)) % 3 == 0, steps=seed)
        for task in ("reach-v3", "push-v3") for pert in ("none", "goal") for seed in range(100, 105)
    ]  # fmt: skip
    whole = build_report(episodes, meta(100, 104, 9.0))
    shares = [
        {**build_report([e for e in episodes if e.seed in seeds], meta(seeds[0], seeds[-1], s)),
         "media": [f"graph-{k}/episodes.gif"]}
        for k, (seeds, s) in enumerate([((103, 104), 4.0), ((100, 101, 102), 5.5)])
    ]  # fmt: skip
    merged = merge_reports(shares)
    for key in ("results", "overall", "episodes", "seeds", "tasks", "perturbations"):
        assert merged[key] == whole[key], key
    assert merged["seconds"] == 5.5 and merged["graphs"] == 2
    assert merged["media"] == ["graph-0/episodes.gif", "graph-1/episodes.gif"]
    with pytest.raises(ValueError, match="not disjoint"):
        merge_reports([shares[0], shares[0]])


def test_an_eval_suite_refuses_no_graphs():
    with pytest.raises(ValueError, match="graphs >= 1"):
        load_pipeline_config(DEBUG, ["eval.graphs=0"])


def test_graphs_side_by_side_get_their_own_domain_and_seeds_and_never_recover_each_other(
    tmp_path, monkeypatch, episode_factory
):
    """Graphs share the record directory, so an interrupted episode there is recovered once,
    before they start, and no graph's recorder recovers on start (it would take another graph's
    episode in progress for an interrupted one); each graph has its own DDS domain and seeds,
    and every policy node infers as the suite says."""
    from vla_rft.data.episode_store import EpisodeWriter
    from vla_rft.rollout.report import EpisodeResult, build_report

    record = tmp_path / "recorded"
    ep = episode_factory(steps=4, size=16)
    writer = EpisodeWriter(record, "killed", ep.meta)  # a graph killed mid-episode last time
    for t in range(3):
        writer.add_step(ep.images[t], ep.states[t], ep.actions[t])
    suite = load_pipeline_config(
        DEBUG, ["eval.episodes=5", "eval.graphs=2", "eval.async_inference=true"]
    ).eval
    commands = []

    def options(cmd):
        """(--flag: value, --set key: value) of a graph's command line."""
        pairs = list(itertools.pairwise(cmd))
        return dict(pairs), dict(v.split("=", 1) for k, v in pairs if k == "--set")

    def fake_graph(cmd, log_file, counter):
        arg, sets = options(cmd)
        seed, n = int(sets["eval_manager_node.seed"]), int(arg["--episodes"])
        episodes = [EpisodeResult(t, "none", s, s % 2 == 0, 10) for t in suite.tasks
                    for s in range(seed, seed + n)]  # fmt: skip
        meta = {"tasks": list(suite.tasks), "perturbations": ["none"],
                "seeds": [seed, seed + n - 1], "seconds": 1.0, "interrupted": None}  # fmt: skip
        out = Path(arg["--report-dir"])
        out.mkdir(parents=True)
        (out / "report.json").write_text(json.dumps({**build_report(episodes, meta), "media": []}))
        log_file.write_text("done\n")
        commands.append(options(cmd))
        return 0

    monkeypatch.setattr(jobs, "_run_graph", fake_graph)
    monkeypatch.setenv("ROS_DOMAIN_ID", "17")
    path = jobs.evaluate_in_graph(Path("pkg"), suite, tmp_path / "eval", record, tmp_path / "e.log")
    assert (record / "killed" / "metadata.yaml").is_file(), "recovered before the graphs started"
    commands.sort(key=lambda c: c[1]["eval_manager_node.seed"])
    assert [a["--domain-id"] for a, _ in commands] == ["17", "18"]
    assert [s["eval_manager_node.seed"] for _, s in commands] == ["1000", "1003"]
    assert all(s["recorder_node.recover_on_start"] == "false" for _, s in commands)
    assert all(s["policy_node.async_inference"] == "true" for _, s in commands)
    assert all(a["--record-dir"] == str(record) for a, _ in commands)
    report = json.loads(path.read_text())
    assert [e["seed"] for e in report["episodes"]] == list(range(1000, 1005))
    assert report["graphs"] == 2 and report["overall"]["none"]["episodes"] == 5
