"""Where the architecture ``hnas train`` trains comes from: a string, a search's result.json, or a W&B artifact.

Exactly one of the three is given (``arch=``, ``from_result=``, ``from_artifact=``). A result.json names its
space, so a mismatch with the recipe's space is caught before anything is built; an artifact is downloaded
through the public wandb API (``wandb.Api().artifact(ref).download()``) and read like a result.json (or, when
it holds none, from its ``arch``/``space`` metadata).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hnas.errors import HNASError

#: a W&B artifact reference: entity/project/name:version (version: v3, latest, or an alias)
ARTIFACT_REF = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+:[\w.-]+$")
SOURCES = ("arch", "from_result", "from_artifact")


class ArchSourceError(HNASError, ValueError):
    """No architecture, several, or one that cannot be read (a result.json without a best, a bad reference)."""


@dataclass(frozen=True)
class ArchSpec:
    """The architecture to train: its text (or index), its space when the source names one, and the source."""

    arch: str | int
    space: str | None
    source: dict[str, Any] = field(default_factory=dict)


def arch_of_result(path: str | Path) -> ArchSpec:
    """``best.arch`` and ``space`` of a search's result.json."""
    path = Path(path)
    if not path.is_file():
        raise ArchSourceError(f"from_result={str(path)!r}: no such file (give the result.json a search wrote, e.g. "
                              "outputs/<name>/<strategy>/seed0-<hash>/result.json)")
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArchSourceError(f"from_result={str(path)!r} is not valid JSON ({e})") from None
    best = result.get("best") if isinstance(result, dict) else None
    arch = best.get("arch") if isinstance(best, dict) else None
    if not isinstance(arch, str) or not arch:
        raise ArchSourceError(f"from_result={str(path)!r} has no best.arch (a search result.json has "
                              "{\"best\": {\"arch\": ...}}; a search whose queries all failed has none)")
    space = result.get("space")
    return ArchSpec(arch, str(space) if space else None, {"from_result": str(path)})


def check_artifact_ref(ref: str) -> str:
    """``ref`` if it reads entity/project/name:version, else ArchSourceError."""
    if not isinstance(ref, str) or not ARTIFACT_REF.match(ref):
        raise ArchSourceError(f"from_artifact={ref!r} is not a W&B artifact reference entity/project/name:version "
                              "(e.g. me/hnas/best-arch-cifar10:latest)")
    return ref


def arch_of_artifact_dir(folder: str | Path, metadata: dict[str, Any] | None, ref: str) -> ArchSpec:
    """The architecture of a downloaded artifact: its result.json (any depth), else its arch/space metadata."""
    found = sorted(Path(folder).rglob("result.json"))
    if found:
        spec = arch_of_result(found[0])
        return ArchSpec(spec.arch, spec.space, {"from_artifact": ref})
    meta = dict(metadata or {})
    if isinstance(meta.get("arch"), str) and meta["arch"]:
        return ArchSpec(meta["arch"], str(meta["space"]) if meta.get("space") else None, {"from_artifact": ref})
    raise ArchSourceError(f"from_artifact={ref!r} holds no result.json and no 'arch' metadata; log the search's "
                          "result.json as the artifact (or set metadata={'arch': ..., 'space': ...})")


def arch_of_artifact(ref: str, api: Any = None) -> ArchSpec:
    """Download the artifact ``ref`` (into a private temporary folder: several ranks may do this at once)."""
    check_artifact_ref(ref)
    if api is None:
        try:
            import wandb

            api = wandb.Api()
        except Exception as e:  # no login, no network, wandb missing: say what to do instead
            raise ArchSourceError(f"from_artifact={ref!r}: the W&B API is not available ({e}); log in "
                                  "(wandb login), or download the artifact yourself and use "
                                  "from_result=<its result.json>") from None
    try:
        artifact = api.artifact(ref)
        folder = artifact.download(root=tempfile.mkdtemp(prefix="hnas-artifact-"))
    except Exception as e:
        raise ArchSourceError(f"from_artifact={ref!r} could not be fetched: {e}") from None
    return arch_of_artifact_dir(folder, getattr(artifact, "metadata", None), ref)


def arch_source(arch: Any = None, from_result: Any = None, from_artifact: Any = None, api: Any = None) -> ArchSpec:
    """The one architecture the config names (exactly one of ``arch``, ``from_result``, ``from_artifact``)."""
    given = [n for n, v in zip(SOURCES, (arch, from_result, from_artifact)) if v not in (None, "")]
    if not given:
        raise ArchSourceError("no architecture to train: give arch=<architecture string or index>, "
                              "from_result=<a search's result.json> or from_artifact=<entity/project/name:version>")
    if len(given) > 1:
        raise ArchSourceError(f"give one architecture source, got {', '.join(given)}")
    if arch not in (None, ""):
        if isinstance(arch, bool) or not isinstance(arch, (str, int)):
            raise ArchSourceError(f"arch must be an architecture string or an index, got {arch!r}")
        return ArchSpec(arch, None, {"arch": arch})
    if from_result not in (None, ""):
        return arch_of_result(str(from_result))
    return arch_of_artifact(str(from_artifact), api=api)
