"""Benchmark tables: NB201 facts and lookups, clear errors, NAFBee, the NATS exporter, score-table import."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from hnas.benchmarks import (
    BenchmarkError,
    BenchmarkFileNotFound,
    NAFBeeTable,
    NB201Benchmark,
    load_benchmark,
)
from hnas.benchmarks.nats_export import COLUMNS, export_compact_csv
from hnas.benchmarks.score_tables import IMPORT_SEED, import_key, import_score_table
from hnas.proxies.result import ProxyScore
from hnas.spaces import get_space
from hnas.spaces.base import SearchSpaceError
from hnas.store import Store

SPACE = get_space("nb201")
# two different spellings of the same function (the output is the input: node 3 = skip from node 0)
ISO_A = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
ISO_B = "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _small_table(tmp_path: Path, archs: list[str], extra: str = "") -> Path:
    lines = ["index,arch,cifar10_test,cost_12ep_s"]
    for a in archs:
        i = SPACE.index(SPACE.parse(a))
        lines.append(f"{i},{a},{50 + i / 1000:.3f},{i / 100:.2f}")
    return _write(tmp_path / "small.csv", "\n".join(lines) + "\n" + extra)


# ---------------------------------------------------------------- NB201 on the real table
def test_nb201_real_table_facts(shared_data: Path) -> None:
    b = load_benchmark("nb201", shared_data / "nb201" / "nb201.csv")
    assert len(b) == 15625
    assert b.optimum("cifar10_test") == (6111, 94.3733)
    assert b.optimum("cifar100_test") == (9930, 73.5133)
    assert b.optimum("imagenet16_test") == (857, 47.3111)
    assert b.optimum("cifar10_valid_12ep") == (13714, 84.892)
    best = SPACE.from_index(6111)
    assert b.index_of(best) == b.index_of(SPACE.format(best)) == b.index_of(6111) == 6111
    assert b.value(SPACE.format(best), "cifar10_test") == 94.3733
    assert b.lookup(best) == b.lookup(6111)
    assert set(b.metrics()) >= {"cifar10_valid_12ep", "cost_12ep_s", "params_mb", "cifar10_test"}
    assert b.columns == ["arch", *b.metrics()]
    assert b.frame.index.name == "index" and b.frame.loc[6111, "arch"] == SPACE.format(best)
    # every spelling of a cell is its own row in NB201: an exact string beats the isomorphism fallback
    i_a, i_b = SPACE.index(SPACE.parse(ISO_A)), SPACE.index(SPACE.parse(ISO_B))
    assert b.index_of(ISO_A) == i_a and b.index_of(ISO_B) == i_b and i_a != i_b


# ---------------------------------------------------------------- NB201 lookups on a small table
def test_nb201_lookup_spellings(tmp_path: Path) -> None:
    b = NB201Benchmark(_small_table(tmp_path, [ISO_A, CONV3]))
    i_a, i_c = SPACE.index(SPACE.parse(ISO_A)), SPACE.index(SPACE.parse(CONV3))
    assert b.index_of(ISO_A) == i_a
    assert b.index_of(ISO_B) == i_a  # not in the table: found through the canonical key
    assert b.index_of(SPACE.parse(ISO_B)) == i_a  # an Arch tuple, too
    assert b.index_of(f"  {CONV3} ") == i_c  # a sloppy spelling of an exact row
    assert b.lookup(CONV3) == {"cifar10_test": round(50 + i_c / 1000, 3), "cost_12ep_s": round(i_c / 100, 2)}
    assert b.value(ISO_B, "cost_12ep_s") == round(i_a / 100, 2)
    assert b.arch(i_c) == CONV3
    assert b.optimum("cost_12ep_s", mode="min") == (min(i_a, i_c), round(min(i_a, i_c) / 100, 2))


def test_nb201_lookup_errors(tmp_path: Path) -> None:
    path = _small_table(tmp_path, [ISO_A, CONV3])
    b = NB201Benchmark(path)
    lo, hi = sorted(SPACE.index(SPACE.parse(a)) for a in (ISO_A, CONV3))
    missing = "|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|"
    with pytest.raises(
        BenchmarkError, match=rf"architecture '\|none~0\|.*' \(canonical key .*\) is not in {path}"
    ):
        b.lookup(missing)
    with pytest.raises(
        BenchmarkError, match=rf"architecture index 0 is not in {path}; valid: {lo}..{hi} \(2 rows\)"
    ):
        b.lookup(0)
    with pytest.raises(
        BenchmarkError, match="unknown metric 'cifar10_valid'.*valid: cifar10_test, cost_12ep_s"
    ):
        b.value(CONV3, "cifar10_valid")
    with pytest.raises(BenchmarkError, match="optimum mode 'best' is not one of: max, min"):
        b.optimum("cifar10_test", mode="best")
    with pytest.raises(BenchmarkError, match="neither an index"):
        b.lookup(True)
    with pytest.raises(SearchSpaceError, match="unknown nb201 op 'conv_5x5'"):
        b.lookup(CONV3.replace("nor_conv_3x3~2", "conv_5x5~2"))


def test_nb201_missing_file_names_path_and_exporter(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "nb201.csv"
    with pytest.raises(BenchmarkFileNotFound, match=rf"NAS-Bench-201 table not found: {path}; .*hnas nats-export"):
        NB201Benchmark(path)
    with pytest.raises(FileNotFoundError):  # callers may catch the builtin
        load_benchmark("nb201", path)
    with pytest.raises(BenchmarkFileNotFound, match="is a directory, not a CSV file"):
        NB201Benchmark(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "index,cifar10_test\n0,90.0\n",
            "lacks column\\(s\\) arch; required: index, arch; found: index, cifar10_test",
        ),
        ("arch,cifar10_test\nx,1\n", "lacks column\\(s\\) index; required: index, arch"),
        (f"index,arch\n0,{CONV3}\n", "has no metric column; required: index, arch and at least one metric"),
        (
            f"index,arch,cifar10_test\n0,{CONV3},high\n",
            "column 'cifar10_test' of .* must be numeric; found 'high'",
        ),
        (f"index,arch,c\n0,{CONV3},1\n0,{ISO_A},2\n", "column 'index' of .* repeats 0"),
        (f"index,arch,c\n0.5,{CONV3},1\n", "column 'index' of .* must hold integers"),
        ("", "is not a readable CSV file"),
    ],
)
def test_nb201_bad_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BenchmarkError, match=message):
        NB201Benchmark(_write(tmp_path / "bad.csv", text))


def test_load_benchmark_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="unknown benchmark 'nb101'; valid: nafbee, nb201"):
        load_benchmark("nb101", tmp_path / "x.csv")


# ---------------------------------------------------------------- NAFBee
def test_nafbee_real_table(shared_data: Path) -> None:
    t = load_benchmark("nafbee", shared_data / "nafbee" / "nafbee.csv")
    assert isinstance(t, NAFBeeTable)
    assert t.tasks() == ["vgg19_cifar10", "bert_sst2"]
    assert len(t.activations()) == 11
    assert t.accuracy("ReLU") == 91.06 and t.accuracy("relu") == 91.06
    assert t.accuracy("GELU", task="bert_sst2") == 92.97
    assert t.ranking()[:3] == [("ReLU", 91.06), ("GELU", 91.03), ("SiLU", 91.03)]
    assert t.ranking("bert_sst2")[0] == ("GELU", 92.97)
    assert t.ranking()[-1] == ("SELU", 85.83)
    assert t.lookup("Mish") == {"vgg19_cifar10_acc": 90.54, "bert_sst2_acc": 84.51}
    assert t.optimum("bert_sst2_acc") == ("GELU", 92.97)
    with pytest.raises(BenchmarkError, match="unknown activation 'Swish'.*valid: ReLU, GELU, SiLU"):
        t.accuracy("Swish")
    with pytest.raises(BenchmarkError, match="unknown NAFBee task 'resnet'; valid: vgg19_cifar10, bert_sst2"):
        t.accuracy("ReLU", task="resnet")


def test_nafbee_bad_file(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="has no '<task>_acc' column"):
        NAFBeeTable(_write(tmp_path / "n.csv", "activation,score\nReLU,1\n"))
    with pytest.raises(BenchmarkError, match="lacks column\\(s\\) activation"):
        NAFBeeTable(_write(tmp_path / "n.csv", "act,vgg19_cifar10_acc\nReLU,1\n"))


# ---------------------------------------------------------------- NATS-Bench exporter
class FakeNATS:
    """The methods of nats_bench's topology API that the exporter uses, with traceable values:
    value = dataset base + hp offset + field offset + index/100."""

    BASE = {"cifar10": 10.0, "cifar10-valid": 20.0, "cifar100": 30.0, "ImageNet16-120": 40.0}
    HP = {"12": 1.0, "200": 2.0}
    FIELD = {"test-accuracy": 0.1, "valid-accuracy": 0.2, "train-all-time": 0.3, "valid-per-time": 0.4}

    def __init__(self, n: int = 3, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at

    def __len__(self) -> int:
        return self.n

    def arch(self, i: int) -> str:
        return SPACE.format(SPACE.from_index(i))

    def get_more_info(self, i: int, dataset: str, hp: str = "12", is_random: bool = True) -> dict[str, float]:
        assert is_random is False, "the exporter must ask for the mean over seeds"
        if i == self.fail_at:
            raise RuntimeError("corrupt entry")
        return {f: self.BASE[dataset] + self.HP[str(hp)] + off + i / 100 for f, off in self.FIELD.items()}

    def get_cost_info(self, i: int, dataset: str) -> dict[str, float]:
        return {"params": 0.5 + i, "flops": 7.0}


def test_nats_export_columns_and_values(tmp_path: Path) -> None:
    out = export_compact_csv(FakeNATS(), tmp_path / "sub" / "nb201.csv", progress=False)
    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS
    assert list(df["arch"]) == [SPACE.format(SPACE.from_index(i)) for i in range(3)]
    expected_row1 = {
        "cifar10_test": 12.11, "cifar100_test": 32.11, "imagenet16_test": 42.11, "cifar10_valid": 22.21,
        "cifar10_valid_12ep": 21.21, "cifar100_valid_12ep": 31.21, "imagenet16_valid_12ep": 41.21,
        "cost_12ep_s": 21.31, "train_time_200ep_s": 22.31, "params_mb": 1.5,
    }  # fmt: skip
    assert df.iloc[1].drop(["index", "arch"]).to_dict() == pytest.approx(expected_row1)
    b = NB201Benchmark(out)  # the exporter's output is a valid compact table
    assert b.optimum("cifar10_test") == (2, pytest.approx(12.12))


def test_nats_export_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "nb201.csv"
    with pytest.raises(RuntimeError, match="corrupt entry"):
        export_compact_csv(FakeNATS(n=3, fail_at=2), out, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one


# ---------------------------------------------------------------- score-table import
def test_import_tiny_table(tmp_path: Path) -> None:
    i_a, i_b, i_c = (SPACE.index(SPACE.parse(a)) for a in (ISO_A, ISO_B, CONV3))
    lo, hi = sorted((i_a, i_b))
    path = _write(
        tmp_path / "zc.csv",
        f"index,jacov,nwot,synflow,myproxy\n{i_c},-5.5,700.25,inf,1\n{hi},1,2,3,4\n{lo},nan,-1e3,0.5,2\n",
    )
    store = Store(tmp_path / "s.db")
    assert import_score_table(store, path) == 3  # isomorphic spellings stay separate rows (own measurements)
    assert import_score_table(store, path) == 3  # idempotent
    key_iso, key_c = SPACE.format(SPACE.from_index(lo)), CONV3
    key_hi = SPACE.format(SPACE.from_index(hi))
    src = "suite_zero:zc.csv"
    assert store.score_sources() == {src: 12}
    assert store.find_scores("nb201", "naswot", source=src) == {
        key_c: ProxyScore(700.25),
        key_iso: ProxyScore(-1e3),
        key_hi: ProxyScore(2.0),
    }
    assert store.find_scores("nb201", "jacob_cov")[key_c] == ProxyScore(-5.5)
    nan = store.find_scores("nb201", "jacob_cov")[key_iso]
    assert nan.status == "nan" and nan.value is None and "zc.csv" in nan.message
    inf = store.find_scores("nb201", "synflow")[key_c]
    assert inf.status == "inf" and inf.value is None and "+inf" in inf.message
    assert store.find_scores("nb201", "myproxy") == {
        key_c: ProxyScore(1.0), key_iso: ProxyScore(2.0), key_hi: ProxyScore(4.0)}
    # stored under the documented import marker, apart from any score hnas computes
    k = import_key("nb201", key_c, "naswot", src)
    assert (k.version, k.seed, k.batch_fp, k.bn_mode, k.dtype) == (
        0,
        IMPORT_SEED,
        f"import:{src}",
        "import",
        "import",
    )
    assert store.get(k) == ProxyScore(700.25)
    assert store.get_scores("nb201", "naswot", 1, 0, "fp", "train", "float32") == {}
    # a custom label keeps a second import apart
    assert import_score_table(store, path, source="mine") == 3
    assert store.score_sources() == {src: 12, "mine": 12}


def test_import_bad_tables(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    with pytest.raises(BenchmarkError, match="lacks column\\(s\\) index"):
        import_score_table(store, _write(tmp_path / "a.csv", "idx,snip\n0,1\n"))
    with pytest.raises(BenchmarkError, match="nb201 index 20000 out of range; valid: 0..15624"):
        import_score_table(store, _write(tmp_path / "b.csv", "index,snip\n0,1\n20000,2\n"))
    with pytest.raises(BenchmarkError, match="column 'snip' of .* must be numeric; found 'x'"):
        import_score_table(store, _write(tmp_path / "c.csv", "index,snip\n0,x\n"))
    with pytest.raises(BenchmarkFileNotFound, match="score table not found"):
        import_score_table(store, tmp_path / "missing.csv")
    assert store.count_scores() == 0  # nothing half-written


def test_import_suite_zero_real_table(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "nb201" / "suite_zero_cifar10.csv"
    table = pd.read_csv(path)
    keys = {i: SPACE.format(SPACE.from_index(i)) for i in table["index"]}
    store = Store(tmp_path / "s.db")
    n = import_score_table(store, path)
    assert n == len(table) == 9445
    assert store.score_sources() == {"suite_zero:suite_zero_cifar10.csv": 13 * n}
    # every row is stored under its own spelling, with hnas proxy names
    row0 = table[table["index"] == 0].iloc[0]
    naswot = store.find_scores("nb201", "naswot", arch_ids=[keys[0]])
    assert naswot == {keys[0]: ProxyScore(float(row0["nwot"]))} and math.isclose(
        row0["nwot"], 738.2763701985645
    )
    assert store.find_scores("nb201", "jacob_cov", arch_ids=[keys[0]])[keys[0]].value == row0["jacov"]
    assert import_score_table(store, path) == n  # idempotent
    assert store.count_scores() == 13 * n
