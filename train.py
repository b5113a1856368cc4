"""Train a face-swapping model: `python train.py [experiment=...] [key=value ...] [-m]`."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

# Idle OpenMP threads sleep instead of spin-waiting, unless the user chose otherwise: beside other jobs on a
# shared machine, spinning threads take the cores the work needs (README, "Shared machines"). Set here, before
# anything loads torch's OpenMP runtime, which reads it once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

log = logging.getLogger("swapper.train")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # imported here: nothing heavy happens before Hydra parses the CLI
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from swapper.ops.exits import (
        EXIT_BAD_INPUT,
        EXIT_NAN,
        START_ERRORS,
        TrainingStopped,
        remove_unstarted_run,
    )
    from swapper.train import run

    # exit codes: swapper/ops/exits.py (README "What happens when things go wrong")
    try:
        metrics = run(cfg)
    except START_ERRORS as err:  # a bad option, input or checkpoint: the message, no traceback
        log.error("%s", err)
        run_dir = HydraConfig.get().runtime.output_dir
        if remove_unstarted_run(run_dir):
            log.error("nothing was trained; removed the run folder %s", run_dir)
        sys.exit(EXIT_BAD_INPUT)
    except TrainingStopped as stop:
        log.error("%s", stop.reason)
        if stop.code == EXIT_NAN and HydraConfig.get().mode == RunMode.MULTIRUN:
            metrics = stop.metrics  # one diverged trial of a sweep: the sweeper records it and goes on
        else:
            sys.exit(stop.code)
    # sweepers (Optuna) minimise/maximise the value returned here
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
