"""Run directories as records: discovery, flattened config, metric histories, duration.

A run directory is what ``train.py`` writes: ``config.yaml`` (resolved), ``csv/metrics.csv``
(Lightning's CSVLogger), ``checkpoints/``, ``previews/latest.png`` and Hydra's ``.hydra/``.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# folders inside a run that never hold another run (saves walking W&B media and checkpoints)
_NOT_RUNS = {".hydra", ".submitit", "wandb", "checkpoints", "previews", "csv"}
# config keys that differ between runs without being a choice: paths, output folders, resume files
_IGNORED_KEY = re.compile(r"(^|\.)(paths|hydra)(\.|$)|(^|\.)(\w*_dir|dirpath|ckpt_path|output_file)$")
# metrics where higher is better; everything else (losses, L1, FID, LPIPS) is minimised
_HIGHER_IS_BETTER = re.compile(r"psnr|ssim|acc|similarity|sim$|cosine|precision|recall|f1")


@dataclass
class Run:
    """One run directory: its flattened config, metric histories ``name -> [(step, value)]``, timing."""

    path: Path
    config: dict[str, Any]
    raw_config: dict[str, Any] | None = None  # Hydra's composed config before interpolation (.hydra/)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    duration_s: float | None = None
    label: str = ""

    def final(self, metric: str) -> float | None:
        """The last logged value (NaN included: a diverged run should show it)."""
        history = self.metrics.get(metric)
        return history[-1][1] if history else None

    def best(self, metric: str, mode: str) -> float | None:
        """The best finite value, ``mode`` "min" or "max"."""
        values = [v for _, v in self.metrics.get(metric, []) if math.isfinite(v)]
        if not values:
            return None
        return min(values) if mode == "min" else max(values)

    @property
    def last_step(self) -> int | None:
        steps = [s for history in self.metrics.values() for s, _ in history]
        return max(steps) if steps else None


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and path.name not in _NOT_RUNS and (path / "config.yaml").is_file()


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories among ``paths``: each is a run or a folder searched recursively for runs."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if is_run_dir(path):
            found.append(path)
            continue
        for dirpath, dirnames, _ in os.walk(path):
            current = Path(dirpath)
            if is_run_dir(current):
                found.append(current)
                dirnames[:] = []  # a run's subfolders are its own files, not runs
            else:
                dirnames[:] = sorted(d for d in dirnames if d not in _NOT_RUNS)
    unique = sorted({p.resolve(): p for p in found}.values(), key=lambda p: str(p))
    if not unique:
        raise FileNotFoundError(
            "no run directories (folders with a config.yaml written by train.py) under "
            + ", ".join(str(p) for p in map(Path, paths))
        )
    return unique


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → ``{"a.b.c": value}``; lists of scalars stay one value (a tuple), others get indices."""
    if isinstance(node, Mapping):
        items: Iterable[tuple[str, Any]] = ((str(k), v) for k, v in node.items())
    elif isinstance(node, Sequence) and not isinstance(node, str):
        if all(not isinstance(v, (Mapping, list, tuple)) for v in node):
            return {prefix: tuple(node)}
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    if not flat and prefix:
        flat[prefix] = None  # an empty node is still a setting (e.g. `logger: {}`)
    return flat


def read_metrics(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metric column of ``csv/**/metrics.csv`` as ``[(step, value)]`` in logging order.

    Several files (a requeued job that logs to ``csv/<restart>/``) are merged oldest first; a step
    logged again after a restart replaces the earlier value.
    """
    files = sorted((run_dir / "csv").rglob("metrics.csv"), key=lambda f: f.stat().st_mtime)
    merged: dict[str, dict[int, float]] = {}
    for file in files:
        with open(file, newline="") as f:
            for row in csv.DictReader(f):
                step = row.get("step")
                if step in (None, ""):
                    continue
                for name, value in row.items():
                    if name in ("step", "epoch") or value in (None, ""):
                        continue
                    merged.setdefault(name, {})[int(float(step))] = float(value)
    return {name: sorted(values.items()) for name, values in sorted(merged.items())}


def run_duration(run_dir: Path) -> float | None:
    """Seconds from the first file a run writes (Hydra's ``.hydra/``, ``config.yaml``) to its last write."""
    starts = [run_dir / ".hydra" / "config.yaml", run_dir / ".hydra" / "hydra.yaml", run_dir / "config.yaml"]
    ends = [
        *(run_dir / "csv").rglob("metrics.csv"),
        *(run_dir / "checkpoints").glob("*.ckpt"),
        run_dir / "previews" / "latest.png",
        *run_dir.glob("*.log"),
    ]
    start = [p.stat().st_mtime for p in starts if p.is_file()]
    end = [p.stat().st_mtime for p in ends if p.is_file()]
    if not start or not end:
        return None
    return max(0.0, max(end) - min(start))


def load_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    # OmegaConf's loader (not plain YAML 1.1) so `1e-4` reads as the float it was in the config
    config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=False) or {}
    raw_file = run_dir / ".hydra" / "config.yaml"
    raw = OmegaConf.to_container(OmegaConf.load(raw_file), resolve=False) if raw_file.is_file() else None
    return Run(
        run_dir,
        flatten(config),
        raw_config=flatten(raw) if raw is not None else None,
        metrics=read_metrics(run_dir),
        duration_s=run_duration(run_dir),
    )


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Load every run under ``paths`` and label each by its path relative to their common folder."""
    runs = [load_run(p) for p in find_runs(paths)]
    resolved = [r.path.resolve() for r in runs]
    root = Path(os.path.commonpath(resolved)) if len(runs) > 1 else resolved[0].parent
    for run, path in zip(runs, resolved, strict=True):
        run.label = str(path.relative_to(root)) if path != root else path.name
    return runs


def is_ignored_key(key: str) -> bool:
    return bool(_IGNORED_KEY.search(key))


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """Config keys whose values are not the same in every run, in config order.

    Left out: paths and output folders (also any value naming the run's own directory), and
    copies made by interpolation (``module.optimizer.lr: ${optimizer.generator.lr}``). Those are
    found in Hydra's un-interpolated ``.hydra/config.yaml`` when every run has one (a copy is the
    same ``${...}`` text in every run); otherwise a key whose last name and values repeat an
    earlier key's is taken for a copy (keys outside ``module.``, the wiring node, come first).
    """
    raw = all(run.raw_config is not None for run in runs)
    keys = list(dict.fromkeys(k for run in runs for k in (run.raw_config if raw else run.config)))
    differ: dict[str, tuple[str, ...]] = {}
    for key in keys:
        if is_ignored_key(key):
            continue
        if raw and len({repr(run.raw_config.get(key, _MISSING)) for run in runs}) < 2:
            continue
        values = tuple(repr(run.config.get(key, _MISSING)) for run in runs)
        if len(set(values)) > 1 and not any(_names_run(run, run.config.get(key)) for run in runs):
            differ[key] = values
    if raw:
        return list(differ)
    kept: dict[tuple[str, tuple[str, ...]], str] = {}
    for key in sorted(differ, key=lambda k: (k.startswith("module."), keys.index(k))):
        kept.setdefault((key.rsplit(".", 1)[-1], differ[key]), key)
    return [k for k in differ if k in kept.values()]


def _names_run(run: Run, value: Any) -> bool:
    return isinstance(value, str) and (str(run.path) in value or str(run.path.resolve()) in value)


def metric_mode(metric: str, runs: Sequence[Run] = ()) -> str:
    """Whether lower ("min") or higher ("max") is better.

    The runs' own ``monitor``/``monitor_mode`` decide for that metric; otherwise the name does
    (PSNR, SSIM, similarity, accuracy: higher; losses, L1, LPIPS, FID: lower).
    """
    for run in runs:
        if run.config.get("monitor") == metric and run.config.get("monitor_mode") in ("min", "max"):
            return run.config["monitor_mode"]
    return "max" if _HIGHER_IS_BETTER.search(metric.rsplit("/", 1)[-1]) else "min"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
