"""The README, run as written: every command of its bash blocks (except blocks marked
``<!-- readme-test: skip (reason) -->``) runs from a folder beside ../shared/data and exits 0."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"<!-- readme-test: skip \((?P<reason>[^)]+)\) -->\s*$")


def readme_blocks(text: str) -> list[tuple[list[str], str | None]]:
    """(commands, skip reason or None) of every ```bash block; continuation lines joined, comments dropped."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            skip = next((m.group("reason") for m in [SKIP.match(lines[i - 1].strip())] if m), None) if i else None
            body = []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            joined = "\n".join(body).replace("\\\n", " ")
            cmds = [re.sub(r"\s+#.*$", "", c).strip() for c in joined.splitlines()]
            out.append(([c for c in cmds if c and not c.startswith("#")], skip))
        i += 1
    return out


def test_the_readme_parser_sees_every_block():
    blocks = readme_blocks((ROOT / "README.md").read_text())
    run = [cmd for cmds, skip in blocks if skip is None for cmd in cmds]
    skipped = [skip for _, skip in blocks if skip is not None]
    assert len(blocks) >= 6 and len(run) >= 3 and all(len(s) > 10 for s in skipped)
    assert any(c.startswith("hnas run -m ") for c in run) and any(c.startswith("hnas report ") for c in run)
    assert any(c.startswith("hnas train ") for c in run)


def test_readme_commands_run_as_written(shared_data, tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data)  # the README's ../shared/data
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    commands = [c for cmds, skip in readme_blocks((ROOT / "README.md").read_text()) if skip is None for c in cmds]
    for cmd in commands:
        argv = shlex.split(cmd)
        if argv[0] == "hnas":
            argv = [sys.executable, "-m", "hnas", *argv[1:]]
        elif argv[:3] == ["python", "-m", "hnas"] or argv[:2] == ["python", "-m"]:
            argv = [sys.executable, *argv[1:]]
        else:
            pytest.fail(f"README command {cmd!r} is neither `hnas ...` nor `python -m ...`: mark its block skipped")
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = sorted(work.rglob("result.json"))
    trained = [r for r in results if r.relative_to(work).parts[:2] == ("outputs", "train")]
    assert len(results) - len(trained) == 5  # the single run, the three-seed sweep and the parallel run
    assert len(trained) == 1 and '"kind": "train"' in trained[0].read_text()  # the cheap hnas train
    assert (work / "multirun" / "nb201_cifar10" / "table.md").read_text().count("| random |") == 1
