"""`python -m swapper.compare`: run discovery, the table (differing keys, final/best, sort), exports."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_train
from omegaconf import OmegaConf
from PIL import Image

from swapper.compare import main
from swapper.ops.plots import CAPTION_HEIGHT, preview_montage
from swapper.ops.report import compare_table, default_metrics, format_duration, to_markdown
from swapper.ops.runs import differing_keys, find_runs, load_runs, metric_mode

METRICS = ["train/g/total", "val/swap_l1", "val/swap_psnr"]


def make_run(
    root: Path,
    name: str,
    lr: float,
    weight: float,
    swap_l1: list[float],
    seconds: float = 60.0,
    preview: tuple[int, int, tuple[int, int, int]] | None = None,
    hydra: bool = True,
) -> Path:
    """A run directory as train.py leaves it: resolved config, Hydra's raw config, metrics.csv, a preview."""
    run = root / name
    out = str(run)
    raw = {  # as composed: copies are ${...} interpolations
        "name": "exp",
        "seed": 1,
        "tags": ["a", "b"],
        "optimizer": {"generator": {"lr": lr}, "discriminator": {"lr": "${optimizer.generator.lr}"}},
        "loss": {"l1": {"weight": weight}},
        "module": {"optimizer": "${optimizer.generator}", "losses": "${loss}"},
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
        "callbacks": {"model_checkpoint": {"dirpath": "${paths.output_dir}/checkpoints"}},
        "logger": {"wandb": {"id": "${paths.output_dir}/id"}},
    }
    resolved = {  # as saved in config.yaml
        "name": "exp",
        "seed": 1,
        "tags": ["a", "b"],
        "optimizer": {"generator": {"lr": lr}, "discriminator": {"lr": lr}},
        "loss": {"l1": {"weight": weight}},
        "module": {"optimizer": {"lr": lr}, "losses": {"l1": {"weight": weight}}},
        "paths": {"output_dir": out},
        "callbacks": {"model_checkpoint": {"dirpath": f"{out}/checkpoints"}},
        "logger": {"wandb": {"id": f"{out}/id"}},
    }
    (run / "csv").mkdir(parents=True)
    OmegaConf.save(resolved, run / "config.yaml")
    if hydra:
        (run / ".hydra").mkdir()
        OmegaConf.save(OmegaConf.create(raw), run / ".hydra" / "config.yaml")
    with open(run / "csv" / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", *METRICS])
        for i, value in enumerate(swap_l1):
            writer.writerow([0, 2 * i, 1.0 / (i + 1), "", ""])
            writer.writerow([0, 2 * i + 1, "", value, -10 * math.log10(value)])
    if preview is not None:
        (run / "previews").mkdir()
        w, h, colour = preview
        Image.new("RGB", (w, h), colour).save(run / "previews" / "latest.png")
    start = 1_700_000_000.0
    for path in [run / "config.yaml", *(run / ".hydra").glob("*.yaml")]:
        os.utime(path, (start, start))
    os.utime(run / "csv" / "metrics.csv", (start + seconds, start + seconds))
    if preview is not None:
        os.utime(run / "previews" / "latest.png", (start + 1, start + 1))
    return run


@pytest.fixture
def runs_root(tmp_path) -> Path:
    root = tmp_path / "outputs" / "exp" / "multirun"
    make_run(
        root, "0", lr=1e-3, weight=1.0, swap_l1=[0.30, 0.20, 0.25], seconds=90, preview=(100, 60, (255, 0, 0))
    )
    make_run(
        root, "1", lr=1e-4, weight=1.0, swap_l1=[0.30, 0.28, 0.27], seconds=30, preview=(80, 70, (0, 255, 0))
    )
    make_run(
        root,
        "2",
        lr=1e-3,
        weight=2.0,
        swap_l1=[0.40, 0.10, 0.15],
        seconds=3700,
        preview=(100, 60, (0, 0, 255)),
    )
    return root


def test_find_runs_recurses_and_skips_the_files_inside_runs(runs_root, tmp_path):
    # W&B and Hydra keep config.yaml files inside a run: they are not runs
    (runs_root / "0" / "wandb" / "offline-run-x" / "files").mkdir(parents=True)
    (runs_root / "0" / "wandb" / "offline-run-x" / "files" / "config.yaml").write_text("a: 1\n")
    assert [p.name for p in find_runs([tmp_path / "outputs"])] == ["0", "1", "2"]
    assert find_runs([runs_root / "1"]) == [runs_root / "1"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no run directories"):
        find_runs([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="nope does not exist"):
        find_runs([tmp_path / "nope"])


def test_table_has_a_row_per_run_the_differing_keys_and_final_and_best_metrics(runs_root):
    runs = load_runs([runs_root])
    assert [r.label for r in runs] == ["0", "1", "2"]
    # lr and weight differ; copies by interpolation, paths and the W&B id made from the path do not count
    assert differing_keys(runs) == ["optimizer.generator.lr", "loss.l1.weight"]
    assert default_metrics(runs) == ["val/swap_l1", "val/swap_psnr"]  # train/g/total is the same in all three
    table = compare_table(runs, metrics=["val/swap_l1", "val/swap_psnr"])
    assert table.columns == [
        "run",
        "optimizer.generator.lr",
        "loss.l1.weight",
        "val/swap_l1 final",
        "val/swap_l1 best",
        "val/swap_psnr final",
        "val/swap_psnr best",
        "steps",
        "duration",
    ]
    assert table.column("val/swap_l1 final") == [0.25, 0.27, 0.15]
    assert table.column("val/swap_l1 best") == [0.20, 0.27, 0.10]
    psnr = [-10 * math.log10(v) for v in (0.20, 0.27, 0.10)]
    assert table.column("val/swap_psnr best") == pytest.approx(psnr)
    assert table.column("steps") == [6, 6, 6]
    assert table.column("duration") == [90, 30, 3700]
    assert [format_duration(d) for d in table.column("duration")] == ["1m30s", "30s", "1h01m"]


def test_interpolated_copies_are_left_out_without_hydra_files_too(tmp_path):
    for i, (lr, weight) in enumerate([(1e-3, 1.0), (1e-4, 1.0), (1e-3, 2.0)]):
        make_run(tmp_path, str(i), lr=lr, weight=weight, swap_l1=[0.3], hydra=False)
    runs = load_runs([tmp_path])
    assert runs[0].raw_config is None and runs[0].config["module.optimizer.lr"] == 1e-3
    assert differing_keys(runs) == ["optimizer.generator.lr", "loss.l1.weight"]


@pytest.mark.parametrize(
    ("sort", "reverse", "order"),
    [
        ("val/swap_l1", False, ["2", "0", "1"]),  # lower is better: best first
        ("val/swap_psnr", False, ["2", "0", "1"]),  # higher is better: best first
        ("val/swap_l1", True, ["1", "0", "2"]),
        ("val/swap_l1 final", False, ["2", "0", "1"]),
        ("duration", False, ["1", "0", "2"]),
        ("optimizer.generator.lr", False, ["1", "0", "2"]),
    ],
)
def test_sort_order(runs_root, sort, reverse, order):
    table = compare_table(load_runs([runs_root]), sort=sort, reverse=reverse)
    assert table.column("run") == order


def test_sort_by_an_unknown_column_is_a_clear_error(runs_root):
    with pytest.raises(ValueError, match="cannot sort by 'val/nope'"):
        compare_table(load_runs([runs_root]), sort="val/nope")


def test_metric_direction():
    assert metric_mode("val/swap_psnr") == "max" and metric_mode("val/id_similarity") == "max"
    assert metric_mode("val/swap_l1") == "min" and metric_mode("train/g/total") == "min"


def test_cli_prints_the_table_and_writes_markdown_csv_plots_and_montage(runs_root, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(
        [
            str(runs_root),
            "--sort",
            "val/swap_l1",
            "--metrics",
            "val/swap_l1",
            "--markdown",
            str(out / "t.md"),
            "--csv",
            str(out / "t.csv"),
            "--plot",
            "val/swap_l1,train/g/total",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == [
        "run",
        "optimizer.generator.lr",
        "loss.l1.weight",
        "val/swap_l1",
        "final",
        "val/swap_l1",
        "best",
        "steps",
        "duration",
    ]
    assert [line.split()[0] for line in printed[2:5]] == ["2", "0", "1"]
    assert printed[2].split()[1:5] == ["0.001", "2", "0.15", "0.1"]

    markdown = (out / "t.md").read_text().splitlines()
    assert len(markdown) == 5 and markdown[0].startswith("| run | optimizer.generator.lr | loss.l1.weight |")
    assert markdown[2] == "| 2 | 0.001 | 2 | 0.15 | 0.1 | 6 | 1h01m |"
    with open(out / "t.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["2", "0", "1"]
    assert float(rows[0]["val/swap_l1 best"]) == 0.1 and float(rows[0]["duration_s"]) == 3700

    for name in ("val_swap_l1.png", "train_g_total.png"):
        image = np.asarray(Image.open(out / name).convert("RGB")).astype(int)
        assert image.shape == (400, 700, 3)
        assert image.std() > 10  # not a blank canvas
        # the first two runs' curves in matplotlib's first colours (C0 blue, C1 orange)
        for colour in ((31, 119, 180), (255, 127, 14)):
            assert (np.abs(image - colour).sum(-1) < 30).sum() > 50, (name, colour)
    montage = Image.open(out / "previews.png").convert("RGB")
    assert montage.size == (2 * 100, 2 * (70 + CAPTION_HEIGHT))  # 2×2 cells as large as the largest preview
    pixels = np.asarray(montage)
    assert tuple(pixels[CAPTION_HEIGHT + 5, 5]) == (255, 0, 0)  # run 0's preview, top left
    assert tuple(pixels[CAPTION_HEIGHT + 5, 100 + 5]) == (0, 255, 0)  # run 1, top right
    assert tuple(pixels[70 + 2 * CAPTION_HEIGHT + 5, 5]) == (0, 0, 255)  # run 2, bottom left
    assert (pixels[:CAPTION_HEIGHT, :40] < 128).any()  # its label was drawn


def test_cli_errors_are_clear(runs_root, tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(runs_root), "--plot", "val/nope", "--out", str(tmp_path / "p")]) == 2
    message = "no run logged val/nope; logged metrics: train/g/total, val/swap_l1, val/swap_psnr"
    assert message in capsys.readouterr().err


def test_montage_is_none_without_previews(tmp_path):
    make_run(tmp_path, "0", lr=1e-3, weight=1.0, swap_l1=[0.3])
    assert preview_montage(load_runs([tmp_path]), tmp_path / "m.png") is None


def test_markdown_escapes_pipes(runs_root):
    table = compare_table(load_runs([runs_root]))
    table.rows[0]["run"] = "a|b"
    assert "| a\\|b |" in to_markdown(table)


@pytest.mark.slow
def test_compare_three_tiny_training_runs(tmp_path, capsys):
    from swapper.train import run

    root = tmp_path / "runs"
    for name, lr, weight in [("a", 1e-3, 1.0), ("b", 1e-4, 1.0), ("c", 1e-3, 2.0)]:
        cfg = compose_train(
            [
                "debug=tiny",
                "logger=csv",
                "trainer.max_steps=2",
                f"optimizer.generator.lr={lr}",
                f"loss.l1.weight={weight}",
            ],
            root / name,
        )
        run(cfg)
    out = tmp_path / "report"
    assert (
        main(
            [
                str(root),
                "--sort",
                "val/swap_l1",
                "--csv",
                str(out / "t.csv"),
                "--plot",
                "val/swap_l1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with open(out / "t.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["run"] for r in rows) == ["a", "b", "c"]
    # config order; then the metrics (the no-swap baseline is the same in every run: left out)
    assert list(rows[0])[:4] == ["run", "loss.l1.weight", "optimizer.generator.lr", "val/rec_l1 final"]
    assert not any("baseline" in column for column in rows[0])
    assert {(r["run"], float(r["optimizer.generator.lr"]), float(r["loss.l1.weight"])) for r in rows} == {
        ("a", 1e-3, 1.0),
        ("b", 1e-4, 1.0),
        ("c", 1e-3, 2.0),
    }
    best = [float(r["val/swap_l1 best"]) for r in rows]
    assert best == sorted(best) and all(0 < b < 1 for b in best)
    assert all(int(r["steps"]) == 2 for r in rows)
    assert all(float(r["duration_s"]) > 0 for r in rows)
    assert Image.open(out / "val_swap_l1.png").size == (700, 400)
    assert Image.open(out / "previews.png").size[0] > 0
    assert "val/swap_l1 best" in capsys.readouterr().out
