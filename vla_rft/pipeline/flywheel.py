"""`vla-rft flywheel --episodes DIR`: one round of the data flywheel on newly recorded episodes.

    vla-rft flywheel --episodes data/recorded          # recorder output from the robot

 1. check       read every episode in DIR; unreadable ones are listed and left out
 2. ingest      copy the good ones into data/flywheel/<round>/{success,failure}, with
                provenance.json (source, digests, which model recorded them); episodes already
                ingested in an earlier round (same content) are skipped
 3. world model fine-tune the current version's world model on its data, every earlier
                round's episodes (kept even if that round's model was rejected) and the new ones
 4. rft         VLA-RFT of the current version's policy in the fine-tuned world model (start
                states from the same data sets' successful episodes)
 5. export      the candidate to ONNX
 6. eval        the candidate, and the current version unless its report covers the same suite,
                through the node graph; the candidate's episodes are recorded for the next round
 7. register    the candidate as the next version in models/, gated against the current one:
                promoted to models/current only if it does not regress and the comparison
                carries evidence (pipeline/gate.py), otherwise kept and marked rejected with
                the reasons
 8. report      <round>/report/report.html and report.json

Run the same command again after an interruption: it continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from vla_rft.contract.config import to_dict
from vla_rft.contract.constants import STANDIN_SOURCE
from vla_rft.pipeline import jobs
from vla_rft.pipeline.config import (
    DEFAULT_PIPELINE_CONFIG,
    S_PER_RFT_STEP,
    S_PER_WORLD_MODEL_STEP,
    load_pipeline_config,
)
from vla_rft.pipeline.gate import gate
from vla_rft.pipeline.html_report import Section, write_report
from vla_rft.pipeline.registry import RegistryError, VersionRecord, current_version, register
from vla_rft.pipeline.stages import (
    Stage,
    pipeline_parser,
    run_pipeline,
    stage_timings,
    timings_table,
)

LEDGER_FILE = "ledger.json"
"""`<data>/ledger.json`: digest of every ingested episode -> where it went (deduplication)."""
WORLD_MODEL, RFT = "world_model", "rft"
"""What a data set in a version record is used for (`use` list)."""


def episode_digest(path: Path) -> str:
    """sha256 over an episode directory's files (names and contents)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def round_tag(parent: str, source: Path) -> str:
    """A round's name: the parent version and a hash of the source directory and its episode
    names, so that re-running the same command resumes the round, and new episodes in the same
    directory start a new one."""
    from vla_rft.data.episode_store import list_episodes

    names = "\n".join(p.name for p in list_episodes(source))
    digest = hashlib.sha256(f"{source.resolve()}\n{names}".encode()).hexdigest()[:8]
    return f"from-{parent}-{digest}"


def check_episodes(
    source: Path, instructions: set[str], include_standin: bool = False
) -> tuple[list[Path], dict[str, str]]:
    """(readable episodes the policy can learn from, {name: why not} for the rest); episodes
    the stand-in policy drove are left out unless `include_standin`."""
    from vla_rft.data import episode_store as store

    good, bad = [], {}
    for path in store.list_episodes(source):
        try:
            episode = store.read_episode(path)
        except store.EpisodeError as err:
            bad[path.name] = err.reason
            continue
        if episode.meta.source == STANDIN_SOURCE and not include_standin:
            bad[path.name] = "driven by the stand-in policy (--include-standin to learn from it)"
            continue
        if episode.meta.instruction not in instructions:
            bad[path.name] = (
                f"instruction {episode.meta.instruction!r} is unknown to the policy "
                "(teach it by behaviour cloning first)"
            )
            continue
        good.append(path)
    for path in store.list_partial_episodes(source):
        bad[path.name] = "interrupted recording (run `vla-rft episodes recover` first)"
    return good, bad


def ingest(good: list[Path], source: Path, round_dir: Path, ledger_path: Path, parent: str):
    """Copy new episodes into round_dir/{success,failure}; returns the provenance record."""
    from vla_rft.data.episode_store import read_episode_meta

    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    entries, duplicates = [], []
    for path in good:
        digest = episode_digest(path)
        if digest in ledger and ledger[digest]["round"] != round_dir.name:  # not a redo
            duplicates.append(path.name)
            continue
        meta = read_episode_meta(path)
        split = "success" if meta.success else "failure"
        target = round_dir / split / path.name
        if not target.exists():
            tmp = target.with_name(f".{path.name}.copying")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(path, tmp)
            tmp.rename(target)
        entries.append(
            {"name": path.name, "digest": digest, "split": split, "task": meta.task,
             "source": meta.source, "extra": meta.extra}
        )  # fmt: skip
    provenance = {
        "source": str(source.resolve()),
        "ingested_at": time.time(),
        "parent_version": parent,
        "episodes": entries,
        "duplicates_skipped": duplicates,
    }
    round_dir.mkdir(parents=True, exist_ok=True)
    (round_dir / "provenance.json").write_text(json.dumps(provenance, indent=1))
    for e in entries:
        ledger[e["digest"]] = {"episode": e["name"], "round": round_dir.name, "source": str(source)}
    tmp = ledger_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ledger, indent=1))
    tmp.replace(ledger_path)
    return provenance


def round_data(round_dir: Path) -> list[dict]:
    """Data-set entries of one ingested round: its successes feed the world model and RFT's
    start states, its failures the world model only (empty splits are left out)."""
    from vla_rft.data.episode_store import list_episodes

    return [
        {"path": str(round_dir / split),
         "use": [WORLD_MODEL, RFT] if split == "success" else [WORLD_MODEL],
         "provenance": str(round_dir / "provenance.json")}
        for split in ("success", "failure")
        if list_episodes(round_dir / split)
    ]  # fmt: skip


def ingested_data(data: Path, exclude: Path) -> list[dict]:
    """`round_data` of every round ingested under `data` but `exclude`, oldest first."""
    rounds = sorted(
        (p.parent for p in data.glob("*/provenance.json") if p.parent != exclude),
        key=lambda p: json.loads((p / "provenance.json").read_text())["ingested_at"],
    )
    return [entry for r in rounds for entry in round_data(r)]


def _same_suite(report: dict, candidate: dict) -> bool:
    keys = ("tasks", "perturbations", "seeds", "max_steps")
    return all(report.get(k) == candidate.get(k) for k in keys)


def current_record(models: Path) -> VersionRecord:
    parent = current_version(models)
    if parent is None:
        raise RegistryError(f"{models} has no current model version (run `vla-rft quickstart`)")
    return VersionRecord.read(models / parent)


def build_stages(
    config_path: str, source: Path, models: Path, data: Path, root: Path, overrides, progress,
    include_standin: bool = False,
):  # fmt: skip
    """The round's stages on top of the current version; returns (work dir, stages)."""
    config = load_pipeline_config(config_path, overrides)
    record = current_record(models)
    parent, parent_dir = record.version, models / record.version
    tag = round_tag(parent, source)
    round_dir, work = data / tag, root / tag
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(to_dict(config), indent=1))
    fw, suite = config.flywheel, config.eval
    recipes = jobs.load_recipes(config)
    # the parent's data, plus every earlier round's episodes (kept even when its model was not
    # promoted: data outlives the model it was collected for)
    known = {d["path"] for d in record.data}
    earlier = [d for d in ingested_data(data, exclude=round_dir) if d["path"] not in known]
    base_data = [*record.data, *earlier]
    roots = {use: [d["path"] for d in base_data if use in d.get("use", [WORLD_MODEL, RFT])]
             for use in (WORLD_MODEL, RFT)}  # fmt: skip

    def check(_):
        from vla_rft.contract.manifest import INSTRUCTIONS_KEY
        from vla_rft.models.checkpoint import load_checkpoint

        policy = load_checkpoint(parent_dir / "checkpoints" / "policy")
        good, bad = check_episodes(source, set(policy.extra[INSTRUCTIONS_KEY]), include_standin)
        for name, reason in bad.items():
            print(f"  left out {name}: {reason}")
        if not good:
            raise ValueError(f"{source}: no usable episodes ({len(bad)} left out)")
        print(f"  {len(good)} usable episodes, {len(bad)} left out")
        return {"good": [p.name for p in good], "bad": bad}

    def ingest_stage(done):
        good = [source / name for name in done["check"]["good"]]
        provenance = ingest(good, source, round_dir, data / LEDGER_FILE, parent)
        counts = {
            s: sum(e["split"] == s for e in provenance["episodes"]) for s in ("success", "failure")
        }
        print(f"  ingested {counts['success']} successes and {counts['failure']} failures into "
              f"{round_dir}; {len(provenance['duplicates_skipped'])} already known")  # fmt: skip
        if not provenance["episodes"]:
            raise ValueError(f"{source}: every episode was ingested before; nothing new to learn")
        return {"round": str(round_dir), **counts}

    def new_roots(use: str) -> list[str]:
        return [d["path"] for d in round_data(round_dir) if use in d["use"]]

    def world_model(done):
        wm_roots = roots[WORLD_MODEL] + new_roots(WORLD_MODEL)
        wm = recipes.world_model
        run_config = replace(
            wm,
            run_dir=str(work / "world_model"),
            init_from=str(parent_dir / "checkpoints" / "world_model"),
            data=replace(wm.data, roots=tuple(wm_roots)),
            optim=replace(
                wm.optim, steps=fw.world_model_steps, lr=fw.world_model_lr, warmup_steps=10
            ),
        )
        return {"checkpoint": jobs.train_world_model(run_config, progress), "roots": wm_roots}

    def rft(done):
        rft_roots = roots[RFT] + new_roots(RFT)
        run_config = replace(
            recipes.rft,
            run_dir=str(work / "rft"),
            policy=str(parent_dir / "checkpoints" / "policy"),
            world_model=done["world_model"]["checkpoint"],
            data=tuple(rft_roots),
            optim=replace(recipes.rft.optim, steps=fw.rft_steps),
        )
        return {"checkpoint": jobs.train_rft(run_config, progress), "roots": rft_roots}

    def export(done):
        out = work / "package"
        shutil.rmtree(out, ignore_errors=True)
        pkg = jobs.export_package(done["rft"]["checkpoint"], done["world_model"]["checkpoint"], out)
        return {"package": pkg}

    def evaluate(done):
        candidate = jobs.evaluate_in_graph(
            Path(done["export"]["package"]), suite, work / "eval" / "candidate",
            round_dir / "recorded", work / "logs" / "eval_candidate.log",
        )  # fmt: skip
        current = parent_dir / "eval" / "report.json"
        cand = json.loads(candidate.read_text())
        if not (current.is_file() and _same_suite(json.loads(current.read_text()), cand)):
            print(f"  {parent}'s evaluation does not cover this suite; evaluating it too")
            current = jobs.evaluate_in_graph(
                parent_dir, suite, work / "eval" / "current", None,
                work / "logs" / "eval_current.log",
            )  # fmt: skip
        return {
            "candidate": str(candidate),
            "current": str(current),
            "recorded": str(round_dir / "recorded"),
        }

    def register_stage(done):
        current = json.loads(Path(done["evaluate"]["current"]).read_text())
        candidate = json.loads(Path(done["evaluate"]["candidate"]).read_text())
        decision = gate(current, candidate, fw.max_drop)
        still_current = current_version(models) == parent
        version = register(
            models, Path(done["export"]["package"]), Path(done["rft"]["checkpoint"]),
            Path(done["world_model"]["checkpoint"]), parent=parent,
            data=[*base_data, *round_data(round_dir)], metrics={"eval": candidate["overall"]},
            eval_dir=work / "eval" / "candidate", gate=decision.to_dict(),
            promote=decision.promote and still_current, pipeline_config=config_path,
        )  # fmt: skip
        print(decision.table)
        verdict = {
            "promoted": f"promoted: {models / 'current'} -> {version.version}",
            "rejected": f"NOT promoted; {parent} stays current",
            "registered": f"not promoted: {current_version(models)} is current now, not {parent}",
        }[version.status]
        print(f"{version.version} registered, {verdict}")
        print("\n".join(f"  - {r}" for r in decision.reasons))
        return {"version": version.version, "status": version.status}

    def report(done):
        from vla_rft.evaluation.compare import bar_chart, markdown

        names = (parent, done["register"]["version"])
        gate_record = VersionRecord.read(models / names[1]).gate
        rows = gate_record["rows"]  # the gate compared the current version and the candidate
        out = work / "report"
        out.mkdir(parents=True, exist_ok=True)
        chart = bar_chart(rows, names, out / "comparison.png")
        timings = stage_timings(work)
        ingested = done["ingest"]
        sections = [
            Section(
                f"{names[1]} ({done['register']['status']}) vs {parent}",
                " ".join(gate_record["reasons"]),
                [markdown(rows, names)],
                [chart],
            ),
            Section(
                "Data",
                f"{ingested['success']} successes and {ingested['failure']} failures from "
                f"{source}; {len(done['check']['bad'])} episodes left out.",
            ),
            Section(
                "World-model fine-tuning", "", [], sorted((work / "world_model").glob("*.png"))
            ),
            Section("VLA-RFT", "", [], [work / "rft" / "curves.png"]),
            Section("Stages", "", [timings_table(timings)]),
        ]
        facts = {
            "round": tag,
            "parent": parent,
            **done["register"],
            "gate": gate_record,
            "comparison": rows,
            "stages": timings,
            "left_out": done["check"]["bad"],
        }
        path = write_report(out, f"VLA-RFT flywheel round {tag}", sections, facts)
        print(f"report: {path}")
        return {"html": str(path)}

    n_eval = suite.num_episodes
    stages = [
        Stage("check", f"read every episode in {source}", 30, check),
        Stage("ingest", f"add the new episodes to {round_dir}, with provenance", 10, ingest_stage),
        Stage(
            "world_model",
            f"fine-tune {parent}'s world model ({fw.world_model_steps} steps)",
            fw.world_model_steps * S_PER_WORLD_MODEL_STEP + 20,
            world_model,
        ),
        Stage(
            "rft",
            f"VLA-RFT of {parent}'s policy ({fw.rft_steps} steps)",
            fw.rft_steps * S_PER_RFT_STEP + 20,
            rft,
        ),
        Stage("export", "export the candidate to ONNX", 30, export),
        Stage(
            "evaluate",
            f"{n_eval} closed-loop episodes of the candidate through the node graph, recorded",
            suite.estimated_seconds() + 20,
            evaluate,
        ),
        Stage("register", f"register the candidate, gated against {parent}", 10, register_stage),
        Stage("report", "write the HTML and JSON report", 10, report),
    ]
    return work, stages


def main(argv: list[str] | None = None) -> int:
    parser = pipeline_parser("vla-rft flywheel", __doc__, "runs/flywheel", "data/flywheel")
    parser.add_argument(
        "--episodes", type=Path, required=True, help="new episodes (recorder output)"
    )
    parser.add_argument(
        "--include-standin",
        action="store_true",
        help="also learn from episodes the stand-in policy drove (left out by default)",
    )
    args = parser.parse_args(argv)

    def plan():
        if not args.episodes.is_dir():
            raise FileNotFoundError(f"{args.episodes}: no such directory of episodes")
        config = (
            args.config or current_record(args.models).pipeline_config or DEFAULT_PIPELINE_CONFIG
        )
        print(f"pipeline config: {config}")
        return build_stages(
            config, args.episodes, args.models, args.data, args.root, args.set, not args.quiet,
            args.include_standin,
        )  # fmt: skip

    return run_pipeline(plan)


if __name__ == "__main__":
    sys.exit(main())
