"""Bad input, tried as a new user would: one line ``error: ...`` naming the value and what is valid, exit
status 2, nothing half-written -- for every case issue 9 lists, and for every command run as a subprocess."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_run import SPACE, _cfg, write_fake_nb201

from hnas.cli import exits_on_user_error
from hnas.experiment.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_fake_nb201(tmp_path_factory.mktemp("bench") / "nb201.csv")


def one_line(capsys, tmp_path: Path, overrides: list[str]) -> str:
    """Run a search with ``overrides`` through the CLI's error rule; the one stderr line it printed."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        exits_on_user_error(run_experiment)(_cfg("run", overrides), out)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not (out / "result.json").exists()
    return err[0]


def base(table: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["+experiment=nb201_cifar10", f"benchmark.path={table}", f"store={tmp_path / 's.sqlite'}", "logger=none",
            "strategy.budget=3", *extra]


@pytest.mark.parametrize("extra,expected", [
    (["seed=-1"], "error: seed must be an integer >= 0, got -1"),
    (["pool.seed=-5"], "error: pool.seed must be an integer >= 0, got -5"),
    (["evaluator.metric=nope"], "error: evaluator.metric='nope' is not a column of the benchmark table"),
    (["pool=table"], "error: config value pool.path is missing (???): set it on the command line, e.g. pool.path="),
    (["pool=list", "pool.archs=hello"], "error: pool.archs must be a list of architecture strings"),
    (["proxies.names=[synflow,bogus]"], "error: unknown proxy 'bogus'; valid: "),
    (["logger=none", "logger.kind=tensorboard"], "error: unknown logger.kind 'tensorboard'; valid: csv, none, wandb"),
    (["strategy.budget=0"], "error: strategy.budget must be a positive integer (distinct queries), got 0"),
    (["data=imagefolder", "evaluator=train", "benchmark=none"], "error: config value data.root is missing (???)"),
])
def test_bad_config_values(capsys, tmp_path, table, extra, expected):
    line = one_line(capsys, tmp_path, base(table, tmp_path, *extra))
    assert line.startswith(expected), line


def test_a_table_without_the_observed_metric_or_the_target(capsys, tmp_path):
    no_metric = write_fake_nb201(tmp_path / "a.csv")
    pd.read_csv(no_metric).drop(columns=["cifar10_valid_12ep"]).to_csv(no_metric, index=False)
    line = one_line(capsys, tmp_path, base(no_metric, tmp_path))
    assert "evaluator.metric='cifar10_valid_12ep' is not a column of the benchmark table" in line
    assert "valid: arch, cifar10_test" not in line and "valid: cifar10_test, cifar100_test" in line
    no_target = write_fake_nb201(tmp_path / "b.csv")
    pd.read_csv(no_target).drop(columns=["cifar10_test"]).to_csv(no_target, index=False)
    line = one_line(capsys, tmp_path, base(no_target, tmp_path))
    assert line.startswith("error: target='cifar10_test' is not a column of the benchmark table")


@pytest.mark.parametrize("column,value,expected", [
    ("cifar10_valid_12ep", math.inf, r"column 'cifar10_valid_12ep' of .* holds inf in row 8 .*must be finite"),
    ("cost_12ep_s", math.nan, r"cost column 'cost_12ep_s' of .* holds nan for index 7; a cost must be a finite"),
    ("cost_12ep_s", -5.0, r"cost column 'cost_12ep_s' of .* holds -5.0 for index 7; a cost must be a finite"),
])
def test_non_finite_or_negative_table_values(capsys, tmp_path, column, value, expected):
    def poke(df: pd.DataFrame) -> pd.Series:
        col = df[column].copy()
        col.iloc[7] = value
        return col

    path = write_fake_nb201(tmp_path / "t.csv", **{column: poke})
    line = one_line(capsys, tmp_path, base(path, tmp_path))
    assert re.search(expected, line), line


def test_a_malformed_arch_row_and_a_truncated_file(capsys, tmp_path):
    path = write_fake_nb201(tmp_path / "t.csv", arch=lambda df: df["arch"].where(df.index != 2, "|conv~0|+|"))
    line = one_line(capsys, tmp_path, base(path, tmp_path))
    assert f"{path}, row 3 (index 2):" in line and "conv" in line and "|op~0|+|op~0|op~1|" in line
    text = write_fake_nb201(tmp_path / "u.csv").read_text()
    cut = tmp_path / "cut.csv"
    cut.write_text(text[: len(text) // 2])
    line = one_line(capsys, tmp_path, base(cut, tmp_path))
    assert f"{cut}, line " in line and "field(s) where the header has 7 (a truncated or damaged file?)" in line


def test_a_nan_observation_is_written_as_null_with_a_reason(tmp_path, capsys):
    """A missing (NaN) value of the observed metric: strict JSON (null, not NaN), a note, never the best."""
    spellings = [SPACE.format(SPACE.from_index(i)) for i in range(4)]
    nan_arch = spellings[0]

    def blank(df: pd.DataFrame) -> pd.Series:
        return df["cifar10_valid_12ep"].where(df["arch"] != nan_arch, np.nan)

    path = write_fake_nb201(tmp_path / "t.csv", cifar10_valid_12ep=blank)
    over = base(path, tmp_path, "pool=list", "pool.archs=[" + ",".join(f"'{a}'" for a in spellings) + "]",
                "strategy.budget=4")
    run_experiment(_cfg("run", over), tmp_path / "out")
    text = (tmp_path / "out" / "result.json").read_text()
    saved = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in result.json"))
    entry = next(h for h in saved["history"] if h["arch"] == nan_arch)
    assert entry["value"] is None and entry["note"].startswith("the evaluation returned nan")
    assert saved["best"]["arch"] != nan_arch and isinstance(saved["best"]["value"], float)


def test_a_store_in_a_read_only_directory(tmp_path):
    """A folder nobody may write to: mode 0555, and (root ignores modes) the immutable attribute for root."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(ro)], check=True)
    try:
        code = ("import sys\nfrom hnas.cli import exits_on_user_error\nfrom hnas.store import Store\n"
                "exits_on_user_error(Store)(sys.argv[1])")
        proc = subprocess.run([sys.executable, "-c", code, str(ro / "store.sqlite")], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)], check=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (f"error: cannot write the store {ro / 'store.sqlite'}: its directory {ro} "
                                            "is read-only (permission denied); set store=<a path in a writable "
                                            "directory>")
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("argv,expected", [
    (["run", "+experiment=nb201_cifar10", "seed=-1"], "error: seed must be an integer >= 0, got -1"),
    (["score", "proxies.names=[bogus]", "data=synthetic"], "error: unknown proxy 'bogus'; valid: "),
    (["report", "nowhere"], "error: nowhere is neither a directory nor a result.json file"),
    (["rbflex-protocol", "strategy.protocol.trials=0", "data=synthetic", "benchmark=none"],
     "error: strategy.protocol.trials must be a positive integer, got 0"),
    (["nafbee-ranking", "benchmark.path=nowhere.csv"], "error: NAFBee table not found: nowhere.csv"),
    (["warmup-table", "out=t.md", "fractions=[2]"], "error: fractions values must be numbers in [0, 1]"),
    (["bench-proxies", "--proxies", "bogus", "--n-archs", "1"], "error: unknown proxy 'bogus'; valid: "),
    (["bench-proxies", "--device", "gpu0", "--n-archs", "1"], "error: --device 'gpu0': proxies.device 'gpu0' is not"),
    (["nats-export", "nowhere", "out.csv"], "error: NATS-Bench topology file not found: nowhere"),
    (["train", "recipe=darts_cifar10"], "error: no architecture to train: give arch=<architecture string or index>"),
    (["frobnicate"], "error: unknown command 'frobnicate'; valid: run, score, report"),
])
def test_every_command_answers_bad_input_with_one_line_and_status_2(tmp_path, argv, expected):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HNAS_STORE": str(tmp_path / "s.sqlite"), "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "hnas", *argv], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(expected), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("result.json"))
