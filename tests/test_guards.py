"""Run guards: the NaN guard on an injected NaN, a simulated pre-emption and its relaunch."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import ROOT, compose_train, signal_when_ready
from omegaconf import open_dict

from swapper.callbacks.guards import PreemptionCheckpoint
from swapper.losses.base import LossTerm
from swapper.ops.exits import EXIT_NAN, EXIT_PREEMPTED, TrainingStopped
from swapper.ops.runs import read_metrics
from swapper.train import run


class NaNFrom(LossTerm):
    """Zero (attached to the graph) before ``from_step``, NaN from then on, in one phase."""

    def __init__(self, phase: str = "discriminator", from_step: int = 2, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.phase = phase
        self.from_step = from_step

    def _value(self, step: int, reference: torch.Tensor) -> torch.Tensor:
        zero = reference.sum() * 0
        return zero + float("nan") if step >= self.from_step else zero

    def generator_loss(self, **step):
        return self._value(step["step"], step["fake"]) if self.phase == "generator" else None

    def discriminator_loss(self, **step):
        return self._value(step["step"], step["fake_logits"][0]) if self.phase == "discriminator" else None


class StepRecorder(L.Callback):
    """Records the global step at which fitting starts and ends (in this process)."""

    seen: dict[str, int] = {}

    def on_train_start(self, trainer, pl_module):
        StepRecorder.seen = {"start": trainer.global_step}

    def on_train_end(self, trainer, pl_module):
        StepRecorder.seen["end"] = trainer.global_step


def _nan_run(tmp_path: Path, phase: str):
    cfg = compose_train(
        [
            "debug=tiny",
            "logger=csv",
            "discriminator=patch",
            "loss=[l1]",
            "callbacks=[default,guards]",
            "trainer.max_steps=8",
        ],
        tmp_path,
    )
    with open_dict(cfg):
        cfg.loss.nan = {"_target_": f"{__name__}.NaNFrom", "phase": phase, "from_step": 2}
    return cfg


def _assert_stopped_with_good_checkpoint(tmp_path: Path, caplog, step: int) -> None:
    messages = [r.getMessage() for r in caplog.records if r.name == "swapper.callbacks.guards"]
    assert any("NaNGuard:" in m and f"at step {step};" in m and "last good" in m for m in messages), messages
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2  # written at the step-2 validation, before the NaN; never replaced
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    steps = [s for s, _ in read_metrics(tmp_path)["train/g/total"]]
    assert max(steps) == 2  # steps 0..2 ran, then the guard stopped the run well before max_steps=8


def test_nan_guard_stops_on_a_nan_discriminator_loss_and_keeps_the_last_good_checkpoint(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="swapper.callbacks.guards")
    with pytest.raises(TrainingStopped) as stopped:  # a clean stop, reported with its exit code
        run(_nan_run(tmp_path, "discriminator"))
    assert stopped.value.code == EXIT_NAN == 3 and "NaNGuard: train/d/total=nan" in stopped.value.reason
    assert not torch.isfinite(torch.tensor(stopped.value.metrics["train/d/total"]))
    _assert_stopped_with_good_checkpoint(tmp_path, caplog, step=3)  # the generator step of batch 3 still ran


def test_nan_guard_stops_on_a_nan_generator_loss(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="swapper.callbacks.guards")
    with pytest.raises(TrainingStopped, match="NaNGuard: train/g/total=nan") as stopped:
        run(_nan_run(tmp_path, "generator"))
    assert stopped.value.code == 3
    _assert_stopped_with_good_checkpoint(tmp_path, caplog, step=2)  # the NaN step was skipped


def test_preemption_checkpoint_rejects_unknown_signals():
    with pytest.raises(ValueError, match="unknown signal 'SIGNOPE'"):
        PreemptionCheckpoint(signals=["SIGNOPE"])
    assert PreemptionCheckpoint(signals=["sigusr2", 10]).signals == [signal.SIGUSR2, signal.SIGUSR1]


@pytest.mark.slow
def test_simulated_preemption_saves_a_checkpoint_and_the_relaunch_continues_from_it(tmp_path):
    out = tmp_path / "preempted"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "debug=tiny",
        "logger=csv",
        "callbacks=[default,guards]",
        "trainer.max_steps=100000",
        "trainer.val_check_interval=1000",
        "callbacks.preview.every_n_steps=1000",
        f"hydra.run.dir={out}",
    ]
    code, text = signal_when_ready(command, signal.SIGUSR1, "PreemptionCheckpoint: on SIGUSR1")
    assert code == EXIT_PREEMPTED, text[-3000:]  # 75: stopped early, to be requeued
    assert "SIGUSR1 received, saved" in text, text[-3000:]
    saved = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    step = saved["global_step"]
    assert 1 <= step < 1000

    cfg = compose_train(
        [
            "debug=tiny",
            "logger=csv",
            f"trainer.max_steps={step + 2}",
            f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
        ],
        tmp_path / "relaunch",
    )
    with open_dict(cfg):
        cfg.callbacks.steps = {"_target_": f"{__name__}.StepRecorder"}
    run(cfg)
    assert StepRecorder.seen == {"start": step, "end": step + 2}
    trained = read_metrics(tmp_path / "relaunch")["train/g/total"]
    assert len(trained) == 2  # only the two remaining steps ran: it continued, it did not start over
    assert min(s for s, _ in trained) >= step - 1


class DtypeRecorder(L.Callback):
    """Records the dtype of the encoder's output during training (autocast makes it bfloat16)."""

    dtypes: list[torch.dtype] = []

    def on_train_start(self, trainer, pl_module):
        DtypeRecorder.dtypes = []
        encoder = pl_module.generator.encoder
        encoder.register_forward_hook(lambda m, i, out: DtypeRecorder.dtypes.append(out.dtype))


def test_bf16_mixed_runs_a_gan_step_on_cpu(tmp_path):
    cfg = compose_train(
        [
            "discriminator=patch",
            "loss=[l1,adversarial]",
            "debug=fdr",
            "logger=none",
            "data.batch_size=2",
            "trainer.precision=bf16-mixed",
        ],
        tmp_path,
    )
    with open_dict(cfg):
        cfg.callbacks.dtypes = {"_target_": f"{__name__}.DtypeRecorder"}
    metrics = run(cfg)
    assert {"train/d/total", "train/g/total", "train/g/adversarial"} <= metrics.keys()
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert torch.bfloat16 in DtypeRecorder.dtypes  # the step really ran under bf16 autocast
