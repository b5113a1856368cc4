"""Train a face-swapping model: `python train.py [experiment=...] [key=value ...] [-m]`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from swapper.train import run  # imported here: nothing heavy happens before Hydra parses the CLI

    metrics = run(cfg)
    # sweepers (Optuna) minimise/maximise the value returned here
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
