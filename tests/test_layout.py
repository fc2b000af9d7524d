"""The layout holds: no import cycle at any depth, no import of another module's private name, every
experiment composes with every strategy, and every strategy's config options are ones the strategy knows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "hnas"
CONF = PKG / "conf"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def hnas_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py")) if "conf" not in p.relative_to(PKG).parts}


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(imported hnas module, names taken from it, line) for every import statement of the file, at any depth
    (module level, inside functions and classes)."""
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "hnas"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "hnas":
                continue
            names = [a.name for a in node.names]
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            out.append((target, [n for n in names if f"{target}.{n}" not in modules], node.lineno))
            out += [(s, [], node.lineno) for s in subs]
    return out


def package_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def graph() -> dict[str, set[str]]:
    """Module -> modules whose import runs when it is imported (importing a.b.c runs a.b's __init__ first,
    unless the importer lives in a.b itself, whose __init__ is then already running)."""
    modules = hnas_modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        own_pkgs = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)} | (
            {name} if path.name == "__init__.py" else set())
        for target, _, _ in imports_of(path, name, modules):
            parts = target.split(".")
            chain = [".".join(parts[:i]) for i in range(2, len(parts) + 1)]
            for t in chain:
                if t in modules and t != name and (t == target or t not in own_pkgs):
                    edges[name].add(t)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle_at_any_depth():
    edges = graph()
    assert len(edges) > 80 and "hnas.cli.run" in edges and "hnas.experiment.runner" in edges["hnas.cli.run"]
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    """The checker itself: a function-level import that closes a loop is reported."""
    edges = graph()
    edges["hnas.errors"].add("hnas.cli")  # as if errors.py imported the CLI inside a function
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1] and "hnas.errors" in cycle


def test_no_module_imports_another_modules_private_name():
    modules = hnas_modules()
    bad = []
    for name, path in modules.items():
        for target, names, line in imports_of(path, name, modules):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != name:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {n} from {target}")
    assert bad == []


def test_top_level_holds_only_the_documented_modules():
    tops = sorted(p.name for p in PKG.iterdir() if p.suffix == ".py")
    assert tops == ["__init__.py", "__main__.py", "errors.py", "files.py", "registry.py", "run.py", "store.py",
                    "tracking.py", "train.py"]


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
STRATEGIES = sorted(p.stem for p in (CONF / "strategy").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_with_every_strategy(experiment):
    from hnas.search import STRATEGIES as REGISTRY

    assert "cifar10" in EXPERIMENTS and {"hnas", "robot", "random", "rea"} <= set(STRATEGIES)
    for strategy in STRATEGIES:
        with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
            cfg = compose("run", overrides=[f"+experiment={experiment}", f"strategy={strategy}"])
        plain = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        assert plain["name"] == experiment and plain["strategy"]["name"] in REGISTRY
        cls = REGISTRY.get(plain["strategy"]["name"])
        unknown = set(plain["strategy"].get("options") or {}) - set(cls.defaults)
        assert not unknown, f"{experiment} x {strategy}: options {unknown} unknown to {cls.__name__}"
        assert plain["strategy"]["budget"] is None or plain["strategy"]["budget"] > 0
