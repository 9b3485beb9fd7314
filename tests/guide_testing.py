"""docs/OPERATOR_GUIDE.md as the tests read it: the commands of its `bash` blocks, in order, with
the part and section they stand in. tests/test_operator_guide.py runs part 1's, tests/test_ros2.py
part 3's; a command in the guide that neither runs fails test_operator_guide.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "OPERATOR_GUIDE.md"
KEEPS_RUNNING = "keeps running"
"""What a command's comment says when the operator leaves it running in its own terminal."""
PLACEHOLDER = re.compile(r"<[a-z_]+>|/path/to/[\w.]+")
"""What a test fills in (angle brackets and /path/to/...); nothing else of a command changes."""


@dataclass(frozen=True)
class Command:
    """One command of the guide."""

    text: str
    """As written, continuation lines joined (comments kept: bash ignores them)."""
    part: str
    """The `# Part N: ...` heading it stands under."""
    section: str
    """The `## ...` heading it stands under."""

    @property
    def keeps_running(self) -> bool:
        return KEEPS_RUNNING in self.text

    def filled(self, values: dict[str, str]) -> str:
        """The command with every placeholder replaced by `values[placeholder]` (KeyError for
        one the test did not fill)."""
        return PLACEHOLDER.sub(lambda m: values[m.group(0)], self.text)


def guide_commands(path: Path = GUIDE) -> list[Command]:
    commands: list[Command] = []
    part = section = ""
    in_block, pending = False, ""
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```bash"
            continue
        if not in_block:
            if line.startswith("# "):
                part, section = line[2:].strip(), ""
            elif line.startswith("## "):
                section = line[3:].strip()
            continue
        stripped = line.strip()
        if stripped.startswith("#") and not pending:
            continue  # a comment line, or the continuation of the previous command's comment
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        if pending or stripped:
            commands.append(Command(pending + stripped, part, section))
        pending = ""
    return commands


def part_commands(prefix: str) -> list[Command]:
    """The commands of the part whose heading starts with `prefix` (e.g. "Part 1")."""
    commands = [c for c in guide_commands() if c.part.startswith(prefix)]
    assert commands, f"no commands under a heading starting {prefix!r} in {GUIDE}"
    return commands


class Shift:
    """The operator's terminals: commands run by bash in the site directory; those that keep
    running (terminal 1) run in the background until ctrl_c()."""

    def __init__(self, site: Path, env: dict[str, str]):
        self.site, self.env = site, env
        self.background: list[subprocess.Popen] = []
        self.durations: dict[str, float] = {}
        self.sourced: list[str] = []
        """`source X` parts of the commands run so far: every later command runs after them,
        as in the operator's terminal."""

    def took(self) -> str:
        """Seconds per command run so far, slowest first (printed by the tests: -s shows it)."""
        rows = sorted(self.durations.items(), key=lambda kv: -kv[1])
        return "\n".join(f"{s:6.1f} s  {c.split('#')[0].strip()}" for c, s in rows)

    def _bash(self, command: str) -> list[str]:
        return ["bash", "-c", " && ".join([*self.sourced, command])]

    def run(self, command: str, timeout: float = 300) -> str:
        start = time.monotonic()
        done = subprocess.run(
            self._bash(command), cwd=self.site, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
        )  # fmt: skip
        self.durations[command] = time.monotonic() - start
        assert done.returncode == 0, f"$ {command}\n(exit {done.returncode})\n{done.stdout[-4000:]}"
        self.sourced += [p.strip() for p in command.split("#")[0].split("&&") if "source " in p]
        return done.stdout

    def start(self, command: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            self._bash(f"exec {command}"), cwd=self.site, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.background.append(proc)
        return proc

    def ctrl_c(
        self, proc: subprocess.Popen | None = None, exit_status: int | tuple[int, ...] = 0
    ) -> str:
        """Ctrl-C in the terminal of `proc` (default: the newest still running); its output.
        The command must exit with `exit_status` (one of them, when a tuple)."""
        proc = proc or self.background[-1]
        self.background.remove(proc)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out = proc.communicate()[0] + "\n[killed: no exit 30 s after Ctrl-C]"
        said = f"$ {proc.args[-1]}\n(exit {proc.returncode})\n{out[-4000:]}"
        allowed = exit_status if isinstance(exit_status, tuple) else (exit_status,)
        assert proc.returncode in allowed, said
        return out

    def close(self) -> None:
        """Ctrl-C whatever still runs (a failed test), without checking how it exits."""
        for proc in self.background:
            os.killpg(proc.pid, signal.SIGINT)
        for proc in self.background:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.background = []
