"""hnas efficiency: test accuracy after k queries and queries to the best value, from result.json files."""

from __future__ import annotations

import json

import pytest

from hnas.analysis.efficiency import efficiency_table, queries_to
from hnas.analysis.report import load_results
from hnas.cli.efficiency import main


def _result(path, strategy, seed, values, tests):
    hist = [{"arch": f"a{i}", "value": v, "cost_s": 1.0, "test": {"c10": t}}
            for i, (v, t) in enumerate(zip(values, tests))]
    best = max(hist, key=lambda h: h["value"])
    path.mkdir(parents=True)
    (path / "result.json").write_text(json.dumps({
        "experiment": "e", "strategy": strategy, "seed": seed, "target": "c10",
        "best": {"arch": best["arch"], "value": best["value"], "test": best["test"]}, "history": hist}))
    return path / "result.json"


def test_queries_to():
    h = [{"value": 1.0}, {"value": float("nan")}, {"value": 3.0}, {"value": 3.0}]
    assert queries_to(h, 3.0) == 3 and queries_to(h, 4.0) is None


def test_table_by_hand(tmp_path, capsys):
    p = [
        _result(tmp_path / "a", "fast", 0, [5, 9, 7, 9], [50, 90, 70, 91]),
        _result(tmp_path / "b", "fast", 1, [9, 1, 1, 1], [92, 10, 10, 10]),
        _result(tmp_path / "c", "slow", 0, [1, 2, 3, 4], [10, 20, 30, 40]),
        _result(tmp_path / "d", "slow", 1, [1, 2], [10, 20]),  # another budget: its own row
    ]
    text = efficiency_table(load_results(p), at=(1, 2, 4))
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): [c.strip() for c in line.split("|")[1:-1]]
            for line in text.splitlines()[2:]}
    fast = rows[("e", "fast", "4")]
    # @1: 50 and 92 -> 71 ± 21; @2: 90 (first 9 kept on ties) and 92 -> 91 ± 1; best value 9 reached at 2 and 1
    assert fast[5:] == ["71.00 ± 21.00", "91.00 ± 1.00", "91.00 ± 1.00", "9.000", "1.5", "2/2"]
    assert rows[("e", "slow", "4")][5:] == ["10.00 ± 0.00", "20.00 ± 0.00", "40.00 ± 0.00", "9.000", "–", "0/1"]
    assert rows[("e", "slow", "2")][5:8] == ["10.00 ± 0.00", "20.00 ± 0.00", "–"]
    # an ablation run: its strategy.options overrides label the row
    r = _result(tmp_path / "abl", "fast", 0, [1], [10])
    (r.parent / ".hydra").mkdir()
    (r.parent / ".hydra" / "overrides.yaml").write_text("- strategy=fast\n- strategy.options.local=false\n- seed=0\n")
    assert "| e | fast local=false | 1 | 1 |" in efficiency_table(load_results([r]), at=(1,))
    main([str(tmp_path), "--at", "2"])
    assert "test @2" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--at", "0"])
