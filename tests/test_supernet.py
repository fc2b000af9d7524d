"""NB201 supernet: weight-sharing views, warm-up checkpoint reuse, scoring that never touches the supernet."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from hnas.data import build_datamodule
from hnas.nn.ops import OP_NAMES
from hnas.nn.supernet import NB201Supernet, SupernetError, sample_path
from hnas.proxies.runtime import score_network
from hnas.spaces import get_space
from hnas.training.supernet import (
    WarmupConfig,
    WarmupError,
    checkpoint_path,
    proxy_options,
    score_candidates,
    score_subnets,
    warm_up_supernet,
)

ARCH = ("nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "none", "nor_conv_3x3")
CHANNELS = [4, 8, 8, 16, 16]  # nb201_channels(C=4, N=1)


def _supernet(seed: int = 0) -> NB201Supernet:
    torch.manual_seed(seed)
    return NB201Supernet(CHANNELS, num_classes=4)


def _batch(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.arange(n) % 4


def _dm():
    return build_datamodule("synthetic", num_train=64, num_test=16, shape=(3, 8, 8), num_classes=4,
                            batch_size=16, valid_fraction=0.5, augment=False)


def test_subnet_is_a_view_equal_to_the_standalone_network():
    sn = _supernet()
    view = sn.subnet(ARCH)
    net = get_space("nb201").build(ARCH, num_classes=4, C=4, N=1, bn_track_running_stats=False)
    assert list(view.state_dict()) == list(net.state_dict())
    net.load_state_dict(view.state_dict())
    x, _ = _batch()
    assert torch.equal(view(x), net(x))
    assert torch.equal(sn(x, ARCH), net(x))
    # shared, not copied: the view's tensors are the supernet's
    sup_ptrs = {p.data_ptr() for p in sn.parameters()}
    assert all(p.data_ptr() in sup_ptrs for p in view.parameters())
    # a deep copy of the view holds only the sub-network's weights
    n_view = sum(p.numel() for p in copy.deepcopy(view).parameters())
    assert n_view == sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in sn.parameters())


def test_bad_arch_names_the_valid_ops():
    with pytest.raises(SupernetError, match="unknown op 'conv_5x5'.*valid ops: none, skip_connect"):
        _supernet().subnet(("conv_5x5",) * 6)
    with pytest.raises(SupernetError, match="tuple of 6 op names"):
        _supernet().subnet(ARCH[:5])


def test_sample_path_is_a_function_of_seed_and_step():
    assert sample_path(3, 7) == sample_path(3, 7)
    paths = {sample_path(0, s) for s in range(200)}
    assert len(paths) > 150  # uniform over 15,625 paths: nearly all distinct
    counts = {op: sum(p.count(op) for p in paths) for op in OP_NAMES}
    assert all(c > 150 for c in counts.values())  # each op ~ 240 of 1,200 edge draws


def test_scoring_never_modifies_the_supernet():
    sn = _supernet()
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    out = score_subnets(sn, [ARCH, sample_path(0, 1)], _batch(), ["sigeo", "zico"], warmed=True, progress=False)
    assert all(s.status == "ok" for scores in out for s in scores.values())
    after = sn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_sigeo_without_fr_loss_and_steps_equals_zico_on_the_same_chunks():
    sn = _supernet()
    opts = {"sigeo": {"lambda2": 0.0, "lambda3": 0.0, "step_during_scoring": False}}
    out = score_subnets(sn, [ARCH], _batch(), ["sigeo", "zico"], warmed=True, options=opts, progress=False)[0]
    assert out["sigeo"].status == "ok"
    assert out["sigeo"].value == pytest.approx(out["zico"].value, rel=1e-12, abs=1e-12)
    # with the reference lambdas the two differ (the FR term is on)
    ref = score_subnets(sn, [ARCH], _batch(), ["sigeo", "zico"], warmed=False, progress=False)[0]
    assert ref["sigeo"].value != pytest.approx(ref["zico"].value)


def test_proxy_options_pick_the_reference_lambdas():
    assert proxy_options(["sigeo", "zico"], warmed=False) == {
        "sigeo": {"lambda2": 1.0, "lambda3": 0.0}, "zico": {"n_batches": 4}}
    assert proxy_options(["sigeo"], warmed=True) == {"sigeo": {"lambda2": 50.0, "lambda3": 1.0}}
    assert proxy_options(["sigeo"], True, {"sigeo": {"lambda2": 3.0}}) == {"sigeo": {"lambda2": 3.0, "lambda3": 1.0}}


def test_subnet_score_equals_the_score_of_a_standalone_copy():
    sn = _supernet()
    net = get_space("nb201").build(ARCH, num_classes=4, C=4, N=1, bn_track_running_stats=False)
    net.load_state_dict(sn.subnet(ARCH).state_dict())
    x, y = _batch()
    opts = proxy_options(["sigeo"], warmed=True)
    a = score_subnets(sn, [ARCH], (x, y), ["sigeo"], warmed=True, progress=False)[0]["sigeo"].value
    b = score_network(net, ["sigeo"], x, y, 4, options=opts)["sigeo"].value
    assert a == b


def test_per_candidate_warmup_matches_between_sigeo_and_zico():
    space = get_space("nb201")
    x, y = _batch()
    wx, wy = _batch(32, seed=5)
    opts = {"sigeo": {"lambda2": 0.0, "lambda3": 0.0, "step_during_scoring": False}}

    def build(arch):
        return space.build(arch, num_classes=4, C=4, N=1)

    warm = score_candidates(build, [ARCH], (x, y), 4, warmup_data=(wx, wy), warmup_epochs=1,
                            warmup_batch_size=16, options=opts, progress=False)[0]
    cold = score_candidates(build, [ARCH], (x, y), 4, options=opts, progress=False)[0]
    # both proxies warmed up the same way (2 SGD steps, lr 1): equal; and different from no warm-up
    assert warm["sigeo"].value == pytest.approx(warm["zico"].value, rel=1e-9)
    assert cold["sigeo"].value == pytest.approx(cold["zico"].value, rel=1e-12)
    assert warm["zico"].value != pytest.approx(cold["zico"].value)


def test_warmup_config_errors():
    with pytest.raises(WarmupError, match=r"warmup.fraction must be a number in \[0, 1\].*got 1.5"):
        WarmupConfig(fraction=1.5)
    with pytest.raises(WarmupError, match=r"unknown warmup option\(s\) \['frac'\]"):
        WarmupConfig.from_dict({"frac": 0.1})


def test_warmup_trains_once_then_loads_the_checkpoint(tmp_path, monkeypatch):
    calls = []
    fit = L.Trainer.fit

    def counting_fit(self, *args, **kwargs):
        calls.append(1)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "fit", counting_fit)
    cfg = WarmupConfig(fraction=0.25, max_steps=2, batch_size=8, C=4, N=1, seed=0)
    dm = _dm()
    first = warm_up_supernet(dm, cfg, tmp_path, trainer={"accelerator": "cpu"})
    assert first.trained_now and first.path.is_file() and len(calls) == 1
    assert first.path.name.startswith("nb201-f0.25-s0-") and "-2steps-" in first.path.name
    mtime = first.path.stat().st_mtime_ns
    second = warm_up_supernet(_dm(), cfg, tmp_path, trainer={"accelerator": "cpu"})
    assert not second.trained_now and len(calls) == 1 and second.path == first.path
    assert first.path.stat().st_mtime_ns == mtime
    s1, s2 = first.supernet.state_dict(), second.supernet.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    # training used uniform single paths: an op on neither of the 2 sampled paths kept its init
    init = warm_up_supernet(dm, WarmupConfig(fraction=0.0, C=4, N=1, seed=0), tmp_path).supernet
    used = {(e, p[e]) for p in (sample_path(0, 0), sample_path(0, 1)) for e in range(6)}
    unused = [(e, op) for e in range(6) for op in ("nor_conv_1x1", "nor_conv_3x3") if (e, op) not in used]
    assert unused
    for e, op in unused:
        w0 = init.cells[0].edges[e][op][1].weight
        assert torch.equal(w0, first.supernet.cells[0].edges[e][op][1].weight)
    assert not torch.equal(init.classifier.weight, first.supernet.classifier.weight)
    # another fraction is another warm-up
    other = checkpoint_path(tmp_path, "nb201", WarmupConfig(fraction=0.5, max_steps=2, batch_size=8, C=4, N=1),
                            "x", 2)
    assert other.name != first.path.name


def test_warmup_table_on_a_tiny_synthetic_setup(tmp_path, monkeypatch):
    import json

    import numpy as np
    from hydra import compose, initialize_config_module
    from scipy.stats import kendalltau, spearmanr

    from hnas.cli.warmup_table import build_table

    def main(overrides: list[str]) -> dict:
        with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
            return build_table(compose("warmup_table", overrides=overrides), overrides)

    space = get_space("nb201")
    archs = space.sample_many(4, np.random.default_rng(0))
    acc = [91.0, 85.5, 93.2, 70.1]
    lines = ["index,arch,cifar10_test"] + [f"{space.index(a)},{space.format(a)},{v}" for a, v in zip(archs, acc)]
    (tmp_path / "nb201.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "docs" / "warmup.md"
    argv = [f"benchmark.path={tmp_path / 'nb201.csv'}", "data=synthetic", "+data.num_train=64", "+data.shape=[3,8,8]",
            "+data.num_classes=4", "data.augment=false", "pool.size=4", "pool.seed=0", "fractions=[0,0.25]",
            "warmup.max_steps=2", "warmup.batch_size=8", "warmup.C=4", "warmup.N=1", "scoring_batch=16",
            "device=cpu", "accelerator=cpu", f"cache_dir={tmp_path / 'cache'}", f"out={out}"]
    result = main(argv)
    text = out.read_text()
    assert "| SiGeo |" in text and "| ZiCo |" in text and "0 % warm-up | 25 % warm-up" in text
    assert (tmp_path / "docs" / "warmup.png").stat().st_size > 1000
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["archs"] == [space.format(a) for a in archs] and saved["truth"] == acc
    for row in saved["rows"]:
        s = saved["scores"][f"{row['fraction']:g}"][row["proxy"]]
        assert row["spearman"] == pytest.approx(spearmanr(s, acc).statistic)
        assert row["kendall"] == pytest.approx(kendalltau(s, acc).statistic)
        assert f"{row['spearman']:.3f} / {row['kendall']:.3f}" in text
    # 0 %: the supernet at its seed-0 initialisation, cold lambdas; 25 %: 16 of 64 images, 2 steps
    torch.manual_seed(0)
    sn = NB201Supernet(CHANNELS, num_classes=4)
    dm = build_datamodule("synthetic", num_train=64, shape=(3, 8, 8), num_classes=4, augment=False)
    b = dm.scoring_batch(16, 0)
    ref = score_subnets(sn, archs, (b.x, b.y), ["sigeo"], warmed=False, progress=False)
    assert saved["scores"]["0"]["sigeo"] == [r["sigeo"].value for r in ref]
    assert [r["warmup_steps"] for r in result["rows"]] == [0, 0, 2, 2]
    # a second run into another (existing) markdown file reuses every saved fraction: nothing is scored
    import hnas.training.supernet

    def no_scoring(*args, **kwargs):
        raise AssertionError("a saved fraction was scored again")

    results_md = tmp_path / "results.md"
    results_md.write_text("# Results\n\nkeep me\n")
    monkeypatch.setattr(hnas.training.supernet, "score_subnets", no_scoring)
    again = main([a if a != f"out={out}" else f"out={results_md}" for a in argv])
    main([a if a != f"out={out}" else f"out={results_md}" for a in argv])  # the section is replaced, not appended
    monkeypatch.undo()
    assert again["scores"] == result["scores"]
    md = results_md.read_text()
    assert md.startswith("# Results\n\nkeep me\n") and md.count("hnas.warmup_table:begin") == 1
    assert md.count("| SiGeo |") == 1 and "](results.png)" in md
    assert {r["scores_file"] for r in again["rows"]} == {r["scores_file"] for r in result["rows"]}
    # a different scoring seed is a different file: scored afresh, never mixed with the saved one
    other = main([*argv[:-1], "seed=1", "fractions=[0]", f"out={tmp_path / 'seed1.md'}"])
    assert other["rows"][0]["scores_file"] not in {r["scores_file"] for r in result["rows"]}


def test_warmup_table_passes_sigeo_batching_and_keeps_its_scores_apart(tmp_path, monkeypatch):
    import numpy as np
    from hydra import compose, initialize_config_module

    import hnas.training.supernet
    from hnas.cli.warmup_table import build_table

    def main(overrides: list[str]) -> dict:
        with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
            return build_table(compose("warmup_table", overrides=overrides), overrides)

    space = get_space("nb201")
    archs = space.sample_many(3, np.random.default_rng(0))
    lines = ["index,arch,cifar10_test"] + [f"{space.index(a)},{space.format(a)},{v}"
                                           for a, v in zip(archs, [91.0, 85.5, 93.2])]
    (tmp_path / "nb201.csv").write_text("\n".join(lines) + "\n")
    argv = [f"benchmark.path={tmp_path / 'nb201.csv'}", "data=synthetic", "+data.num_train=300",
            "+data.shape=[3,8,8]", "+data.num_classes=4", "data.augment=false", "pool.size=3", "fractions=[0]",
            "warmup.C=4", "warmup.N=1", "scoring_batch=128", "device=cpu", "accelerator=cpu",
            f"cache_dir={tmp_path / 'cache'}"]
    orig, seen = hnas.training.supernet.score_subnets, []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("options"))
        return orig(*args, **kwargs)

    monkeypatch.setattr(hnas.training.supernet, "score_subnets", spy)
    split = main([*argv, f"out={tmp_path / 'split.md'}"])
    ref = main([*argv, "sigeo_batching=reference", f"out={tmp_path / 'ref.md'}"])
    assert seen == [{}, {"sigeo": {"batching": "reference"}}]  # the reference run did not reuse split's scores
    assert ref["rows"][0]["scores_file"] != split["rows"][0]["scores_file"]
    # 128 images: reference = 2 chunks of 64, split = 4 chunks of 32 -> other SiGeo values; ZiCo untouched
    assert ref["scores"]["0"]["sigeo"] != split["scores"]["0"]["sigeo"]
    assert ref["scores"]["0"]["zico"] == split["scores"]["0"]["zico"]
    assert "SiGeo batching reference" in (tmp_path / "ref.md").read_text()
