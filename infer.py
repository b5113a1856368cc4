"""Swap faces with a trained run: `python infer.py run=outputs/<name>/<time> input=... output=...`."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

log = logging.getLogger("swapper.infer")


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
def main(cfg: DictConfig) -> None:
    from swapper.inference.folder import swap_folder
    from swapper.inference.loading import load_model, pick_device

    try:
        model, run_cfg = load_model(cfg.run, cfg.checkpoint, pick_device(cfg.device))
        report = swap_folder(
            model,
            cfg.input,
            cfg.output,
            image_size=run_cfg.image_size,
            direction=cfg.direction,
            batch_size=cfg.batch_size,
            overwrite=cfg.overwrite,
            progress=cfg.progress,
        )
    except (FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        sys.exit(2)
    log.info(
        "wrote %d image(s) to %s; kept %d existing (overwrite=true replaces them); %d unreadable",
        len(report.written),
        cfg.output,
        len(report.skipped_existing),
        len(report.unreadable),
    )
    if not report.written and not report.skipped_existing:
        sys.exit(1)


if __name__ == "__main__":
    main()
