"""Sweeps and cluster jobs: Optuna, the real submitit launcher, the SLURM launcher, W&B run identity."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import CONF, compose_train, run_script
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf

from swapper.ops.runs import load_run
from swapper.ops.tracking import run_group, run_id, run_name, wandb_logger


def _trials(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _wandb_run_record(offline_dir: Path) -> dict:
    """The run record (name, group, id) of an offline W&B run, read back with `wandb leet inspect`."""
    wandb = Path(sys.executable).parent / "wandb"
    result = subprocess.run(
        [str(wandb), "leet", "inspect", "--json", str(offline_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return next(r["run"] for r in records if r.get("type") == "run")


@pytest.mark.slow
def test_optuna_sweep_runs_two_trials_and_maximises_the_returned_metric(tmp_path, capsys):
    sweep = tmp_path / "optuna"
    result = run_script(
        "train.py",
        "-m",
        "hparams_search=optuna",
        "debug=tiny",
        "trainer.max_steps=2",
        "callbacks=none",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = [load_run(p) for p in _trials(sweep)]
    assert len(trials) == 2
    lrs = [t.config["optimizer.generator.lr"] for t in trials]
    warps = [t.config["augmentation.warp.scale"] for t in trials]
    assert lrs[0] != lrs[1] and all(1e-5 <= lr <= 2e-3 for lr in lrs)
    assert all(0.01 <= w <= 0.06 for w in warps)
    # the objective is each trial's final val/swap_psnr (what train.py returns); the direction is maximize
    finals = [t.final("val/swap_psnr") for t in trials]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert math.isclose(results["best_value"], max(finals), rel_tol=1e-5)
    best = trials[finals.index(max(finals))]
    best_lr = best.config["optimizer.generator.lr"]
    assert math.isclose(results["best_params"]["optimizer.generator.lr"], best_lr)

    # each trial is its own W&B run, named by its overrides, in the sweep's group
    for trial in _trials(sweep):
        (offline,) = (trial / "wandb").glob("offline-run-*")
        record = _wandb_run_record(offline)
        assert record["run_group"] == f"deepfakes_lite-{sweep.name}"
        assert record["run_id"] == run_id(trial)
        assert "optimizer.generator.lr=" in record["display_name"]

    # the comparison table shows exactly the two searched keys
    from swapper.compare import main

    assert main([str(sweep), "--metrics", "val/swap_psnr"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header[:3] == ["run", "augmentation.warp.scale", "optimizer.generator.lr"]
    assert header[3:5] == ["val/swap_psnr", "final"]


@pytest.mark.slow
def test_multirun_through_the_submitit_local_launcher(tmp_path):
    sweep = tmp_path / "submitit"
    result = run_script(
        "train.py",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "debug=tiny",
        "logger=csv",
        "callbacks=none",
        "trainer.max_steps=1",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [load_run(j) for j in _trials(sweep)]
    assert [j.config["seed"] for j in jobs] == [1, 2]
    assert all(j.metrics["train/g/total"] for j in jobs)  # both trained
    # each job ran in its own submitit process, which logged to the sweep's .submitit folder
    logs = list((sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """An `srun` on PATH so submitit's SLURM executor can be built (it only writes the sbatch script here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_PARTITION", "gpu-long")
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj42")


def test_slurm_launcher_writes_a_multi_node_ddp_sbatch_script(tmp_path, fake_slurm, monkeypatch):
    import submitit

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            return_hydra_config=True,
            overrides=[
                "hydra/launcher=slurm",
                "trainer=ddp",
                "trainer.devices=4",
                "trainer.num_nodes=2",
                f"hydra.sweep.dir={tmp_path / 'sweep'}",
                "hydra.launcher.setup=[source .venv/bin/activate]",
            ],
        )
    HydraConfig.instance().set_config(cfg)

    class Submitted(Exception):
        pass

    def capture(executor, fn, *args):  # stop where the launcher would call sbatch
        raise Submitted(executor)

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda c: None, config=cfg)
    with pytest.raises(Submitted) as submitted:
        launcher.launch([["seed=1"]], initial_job_idx=0)
    script = submitted.value.args[0]._executor._make_submission_file_text("python -m job", "uid")
    for line in [
        "--nodes=2",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
        "--cpus-per-task=8",
        "--mem=64GB",
        "--partition=gpu-long",
        "--account=proj42",
        "--signal=USR2@120",
        "--time=1440",
        "--job-name=deepfakes_lite",
    ]:
        assert f"#SBATCH {line}\n" in script, script
    assert "source .venv/bin/activate" in script and "srun " in script


def test_wandb_run_identity(tmp_path):
    run_dir = tmp_path / "outputs" / "x" / "2026-01-01_00-00-00"
    sweep_dir = tmp_path / "outputs" / "x" / "multirun_1"
    assert run_group("x", run_dir, sweep_dir) == "x"  # a single run: the experiment's group
    assert run_group("x", sweep_dir / "3", sweep_dir) == "x-multirun_1"  # a sweep job: the sweep's group
    assert run_name("x", "optimizer.generator.lr=0.001") == "x:optimizer.generator.lr=0.001"
    assert run_name("x", "") == "x"
    assert run_id(run_dir) == run_id(str(run_dir) + "/") != run_id(sweep_dir / "3")
    assert len(run_id(run_dir)) == 16

    logger = wandb_logger(
        project="swapper",
        name="x",
        save_dir=str(sweep_dir / "3"),
        group="x",
        tags=["a"],
        sweep_dir=str(sweep_dir),
        overrides="seed=2",
    )
    init = logger._wandb_init  # what wandb.init receives (the experiment itself starts lazily)
    assert (init["name"], init["group"], init["resume"]) == ("x:seed=2", "x-multirun_1", "allow")
    assert init["id"] == run_id(sweep_dir / "3") and init["tags"] == ["a"]
    assert wandb_logger(project="p", name="x", save_dir=str(run_dir), id="abc")._wandb_init["id"] == "abc"


def test_wandb_logger_config_names_the_run_by_overrides_and_groups_by_sweep(tmp_path):
    # needs conf/logger/wandb.yaml to target swapper.ops.tracking.wandb_logger (issue 7)
    cfg = compose_train(["logger=wandb", "optimizer.generator.lr=0.001"], tmp_path / "run")
    node = OmegaConf.to_container(cfg.logger.wandb, resolve=True)
    assert node["_target_"] == "swapper.ops.tracking.wandb_logger", node
    logger = instantiate(cfg.logger.wandb)
    init = logger._wandb_init
    assert init["name"] == "deepfakes_lite:optimizer.generator.lr=0.001"
    assert init["group"] == "deepfakes_lite"
    assert init["id"] == run_id(tmp_path / "run")
