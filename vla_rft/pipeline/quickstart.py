"""`vla-rft quickstart`: the whole VLA-RFT loop on the simulated robot, in one command.

    vla-rft quickstart                        # 17-22 minutes on 2 CPU cores (README)
    vla-rft quickstart --config training/debug/pipeline.yaml --root runs/qs-debug   # 30 s

 1. collect     expert demonstrations in the simulator          -> data/quickstart/episodes
 2. world model pre-train the action-conditioned world model     -> <root>/world_model
 3. policy      pre-train the policy by behaviour cloning        -> <root>/policy
 4. rft         VLA-RFT: GRPO inside the world model             -> <root>/rft
 5. export      both policies (and the world model) to ONNX      -> <root>/packages/{base,rft}
 6. eval base   closed loop through the node graph, recorded     -> <root>/eval/base
 7. eval rft    the same episodes for the fine-tuned policy      -> <root>/eval/rft
 8. register    base as a model version, the RFT policy gated against it -> models/
 9. report      <root>/report/report.html and report.json

Interrupted (Ctrl-C, a crash, a reboot)? Run the same command again: finished stages are
skipped and training continues from its last checkpoint (`<root>/pipeline.json` holds the state).
The episodes recorded in steps 6-7 are what `vla-rft flywheel --episodes ...` learns from next.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from vla_rft.contract.config import to_dict
from vla_rft.pipeline import jobs
from vla_rft.pipeline.config import (
    DEFAULT_PIPELINE_CONFIG,
    S_PER_EPISODE,
    S_PER_POLICY_STEP,
    S_PER_RFT_STEP,
    S_PER_WORLD_MODEL_STEP,
    load_pipeline_config,
)
from vla_rft.pipeline.gate import gate
from vla_rft.pipeline.html_report import Section, write_report
from vla_rft.pipeline.registry import VersionRecord, current_version, register
from vla_rft.pipeline.stages import (
    Stage,
    pipeline_parser,
    run_pipeline,
    stage_timings,
    timings_table,
)


def build_stages(
    config_path: str, overrides: list[str], root: Path, data: Path, models: Path, progress: bool
):
    """The quickstart's stages with their state in `root`."""
    config = c = load_pipeline_config(config_path, overrides)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(to_dict(config), indent=1))
    episodes = data / "episodes"
    roots = (str(episodes),)
    suite = c.eval
    recipes = jobs.load_recipes(c)
    n_eval = suite.num_episodes

    def collect(_):
        from vla_rft.rollout.collect import CollectConfig
        from vla_rft.rollout.collect import collect as run_collect

        summary = run_collect(
            CollectConfig(
                out=episodes,
                tasks=c.collect.tasks,
                episodes_per_task=c.collect.episodes,
                image_size=c.collect.image_size,
                action_noise=c.collect.noise,
            ),
            progress=progress,
        )
        print(summary.table())
        return {"episodes": str(episodes)}

    def world_model(_):
        wm = recipes.world_model
        run_config = replace(
            wm, run_dir=str(root / "world_model"), data=replace(wm.data, roots=roots)
        )
        return {"checkpoint": jobs.train_world_model(run_config, progress)}

    def policy(_):
        bc = recipes.policy
        run_config = replace(bc, run_dir=str(root / "policy"), data=replace(bc.data, roots=roots))
        return {"checkpoint": jobs.train_policy(run_config, progress)}

    def rft(done):
        run_config = replace(
            recipes.rft,
            run_dir=str(root / "rft"),
            policy=done["policy"]["checkpoint"],
            world_model=done["world_model"]["checkpoint"],
            data=roots,
        )
        return {"checkpoint": jobs.train_rft(run_config, progress)}

    def export(done):
        wm = done["world_model"]["checkpoint"]
        return {
            name: jobs.export_package(done[stage]["checkpoint"], wm, root / "packages" / name)
            for name, stage in (("base", "policy"), ("rft", "rft"))
        }

    def evaluate(name):
        def run(done):
            report = jobs.evaluate_in_graph(
                Path(done["export"][name]),
                suite,
                root / "eval" / name,
                data / "recorded" / name,
                root / "logs" / f"eval_{name}.log",
            )
            return {"report": str(report), "recorded": str(data / "recorded" / name)}

        return run

    def register_versions(done):
        base_report = json.loads(Path(done["eval_base"]["report"]).read_text())
        rft_report = json.loads(Path(done["eval_rft"]["report"]).read_text())
        decision = gate(base_report, rft_report, c.flywheel.max_drop)
        first = current_version(models) is None
        data_record = [{"path": str(episodes), "provenance": "quickstart expert demonstrations"}]
        wm = done["world_model"]["checkpoint"]
        base = register(
            models, Path(done["export"]["base"]), Path(done["policy"]["checkpoint"]), Path(wm),
            parent=current_version(models), data=data_record,
            metrics={"eval": base_report["overall"]}, eval_dir=root / "eval" / "base",
            promote=first, pipeline_config=config_path,
        )  # fmt: skip
        tuned = register(
            models, Path(done["export"]["rft"]), Path(done["rft"]["checkpoint"]), Path(wm),
            parent=base.version, data=data_record, metrics={"eval": rft_report["overall"]},
            eval_dir=root / "eval" / "rft", gate=decision.to_dict(),
            promote=first and decision.promote, pipeline_config=config_path,
        )  # fmt: skip
        print(decision.table)
        verdict = "promoted" if tuned.status == "promoted" else "not promoted"
        print(f"{base.version}: base policy; {tuned.version}: VLA-RFT policy, {verdict}:")
        print("\n".join(f"  - {r}" for r in decision.reasons))
        return {"base": base.version, "rft": tuned.version, "current": current_version(models)}

    def report(done):
        path = write_quickstart_report(root, done, models)
        print(f"report: {path}")
        return {"html": str(path)}

    wm_steps = recipes.world_model.optim.steps
    policy_steps = recipes.policy.optim.steps
    rft_steps = recipes.rft.optim.steps
    n_collect = len(c.collect.tasks) * c.collect.episodes
    return [
        Stage("collect", f"record {n_collect} expert episodes in the simulator",
              n_collect * S_PER_EPISODE, collect),
        Stage("world_model", f"pre-train the world model ({wm_steps} steps)",
              wm_steps * S_PER_WORLD_MODEL_STEP + 20, world_model),
        Stage("policy", f"pre-train the policy by behaviour cloning ({policy_steps} steps)",
              policy_steps * S_PER_POLICY_STEP + 20, policy),
        Stage("rft", f"VLA-RFT inside the world model ({rft_steps} GRPO steps)",
              rft_steps * S_PER_RFT_STEP + 20, rft),
        Stage("export", "export the base and fine-tuned policies and the world model to ONNX",
              40, export),
        Stage("eval_base", f"{n_eval} closed-loop episodes of the base policy through the "
              "node graph, recorded", suite.estimated_seconds() + 20, evaluate("base")),
        Stage("eval_rft", f"the same {n_eval} episodes for the VLA-RFT policy, recorded",
              suite.estimated_seconds() + 20, evaluate("rft")),
        Stage("register", f"register both as model versions in {models}, gate the RFT one",
              10, register_versions),
        Stage("report", "write the HTML and JSON report", 10, report),
    ]  # fmt: skip


def write_quickstart_report(root: Path, done: dict, models: Path) -> Path:
    from vla_rft.evaluation.compare import bar_chart, markdown

    registered = done["register"]
    gate_record = VersionRecord.read(models / registered["rft"]).gate
    rows = gate_record["rows"]  # the gate compared base (current) and RFT (candidate)
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    chart = bar_chart(rows, ("base", "VLA-RFT"), out / "comparison.png")
    timings = stage_timings(root)
    sections = [
        Section(
            "Closed-loop success: base vs VLA-RFT",
            "Same seeds for both policies, through the node graph (simulated robot, policy node "
            "on the ONNX package, evaluation manager, recorder). 95% Wilson intervals; McNemar "
            "on the paired episodes.",
            [markdown(rows, ("base", "VLA-RFT"))],
            [chart],
        ),
        Section(
            "Model versions",
            f"{registered['base']}: base; {registered['rft']}: VLA-RFT. Current: "
            f"{registered['current']}. Gate: " + " ".join(gate_record.get("reasons", [])),
        ),
        Section("Stages", "", [timings_table(timings)]),
        Section("World model", "", [], sorted((root / "world_model").glob("*.png"))),
        Section("Policy pre-training", "", [], [root / "policy" / "curves.png"]),
        Section("VLA-RFT", "", [], [root / "rft" / "curves.png"]),
        Section(
            "Episodes",
            "One success and one failure per policy (first frames left to right).",
            [],
            [
                Path(p)
                for stage in ("eval_base", "eval_rft")
                for p in json.loads(Path(done[stage]["report"]).read_text()).get("media", [])
                if p.endswith(".png")
            ],
        ),
    ]
    facts = {"stages": timings, "comparison": rows, "versions": registered, "gate": gate_record}
    return write_report(out, "VLA-RFT quickstart", sections, facts)


def main(argv: list[str] | None = None) -> int:
    parser = pipeline_parser("vla-rft quickstart", __doc__, "runs/quickstart", "data/quickstart")
    args = parser.parse_args(argv)

    def plan():
        config = args.config or DEFAULT_PIPELINE_CONFIG
        return args.root, build_stages(
            config, args.set, args.root, args.data, args.models, not args.quiet
        )

    return run_pipeline(plan)


if __name__ == "__main__":
    sys.exit(main())
