"""Swap faces with a trained run: `python infer.py run=outputs/<name>/<time> input=... output=...`.

Photos, folders and videos go through the stage pipeline of ``swapper.inference.pipeline``
(detect → select → smooth → align → swap → mask → colour → blend → write); folders of aligned
crops are swapped as they are. Exit status: 0 done, 1 nothing could be swapped, 2 bad run or input.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Idle OpenMP threads sleep instead of spin-waiting, unless the user chose otherwise: beside other jobs on a
# shared machine, spinning threads take the cores the work needs (README, "Shared machines"). Set here, before
# anything loads torch's OpenMP runtime, which reads it once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

log = logging.getLogger("swapper.infer")


def _describe(job) -> str:
    from swapper.inference.video import probe

    if job.kind != "video":
        return job.kind
    try:
        return f"video ({probe(job.source).describe()})"
    except (ValueError, FileNotFoundError, ImportError) as err:
        return f"video (unreadable: {err})"


def infer(cfg: DictConfig) -> int:
    """Run inference as configured; returns the exit status."""
    from hydra.utils import instantiate

    from swapper.inference.files import read_bgr, write_bgr_atomic
    from swapper.inference.folder import check_crop_sizes, swap_folder
    from swapper.inference.jobs import plan_jobs
    from swapper.inference.loading import load_generator, pick_device
    from swapper.inference.pipeline import FaceSwapPipeline, aligned_crop, crop_of_largest_face
    from swapper.inference.swap import build_swap

    try:
        jobs = plan_jobs(cfg.input, cfg.output, cfg.mode)
        loaded = load_generator(cfg.run, cfg.checkpoint, pick_device(cfg.device))
        model = loaded.generator
        aligner = instantiate(cfg.align).for_crop(loaded.crop)
        # mode=crops: the inputs are aligned crops, and so is the source (no detection at all)
        source_is_crop = cfg.mode == "crops"
        crop_files = [j.source for j in jobs if j.kind == "crops"]
        crop_files += [Path(cfg.source)] if source_is_crop and cfg.source is not None else []
        check_crop_sizes(crop_files, aligner.size, cfg.get("stretch_crops", False))
        need_faces = (cfg.source is not None and not source_is_crop) or any(j.kind != "crops" for j in jobs)
        detector = instantiate(cfg.detector) if need_faces else None
        source = None
        if cfg.source is not None:
            image = read_bgr(cfg.source)
            if image is None:
                raise ValueError(f"source {cfg.source} cannot be read as an image")
            if source_is_crop:
                source = aligned_crop(image, aligner.size)
            else:
                source = crop_of_largest_face(image, detector, aligner, f"source photo {cfg.source}")
        swap = build_swap(model, cfg.direction, source, cfg.batch_size)
    except (FileNotFoundError, ValueError, ImportError) as err:
        log.error("%s", err)
        return 2

    todo = [j for j in jobs if cfg.overwrite or not j.target.exists()]
    kept = [j for j in jobs if j not in todo]
    if cfg.dry_run:
        log.info("dry run: %d job(s) with %s (%s), template %s, crop %d px", len(jobs), cfg.run,
                 type(model).__name__, aligner.template.name, aligner.size)  # fmt: skip
        for job in jobs:
            action = "write" if job in todo else "keep existing (overwrite=true replaces it)"
            log.info("  %s: %s -> %s [%s]", action, job.source, job.target, _describe(job))
        return 0
    if kept:
        log.info("keeping %d existing output(s); overwrite=true replaces them", len(kept))

    written, faces, failed = 0, 0, []
    crops = [j for j in todo if j.kind == "crops"]
    if crops:
        report = swap_folder(
            swap, cfg.input, cfg.output, aligner.size, cfg.batch_size, cfg.overwrite, cfg.progress
        )
        written += len(report.written)
        faces += len(report.written)
        failed += [str(p) for p in report.unreadable]

    frame_jobs = [j for j in todo if j.kind != "crops"]
    if frame_jobs:
        try:
            selector = instantiate(cfg.select)
            selector.prepare(detector)
            pipeline = FaceSwapPipeline(
                detector, selector, aligner, swap, instantiate(cfg.mask), instantiate(cfg.blend),
                instantiate(cfg.color), instantiate(cfg.smoothing) if cfg.get("smoothing") else None,
                cfg.video.scene_cut, cfg.batch_frames,
                instantiate(cfg.sharpen) if cfg.get("sharpen") else None,
                instantiate(cfg.expression) if cfg.get("expression") else None,
            )  # fmt: skip
        except (FileNotFoundError, ValueError, ImportError) as err:
            log.error("%s", err)
            return 2
        single = len(jobs) == 1
        start = time.perf_counter()
        for job in frame_jobs:
            try:
                if job.kind == "image":
                    image = read_bgr(job.source)
                    if image is None:
                        raise ValueError(f"cannot decode image {job.source}")
                    out, count = pipeline.swap_image(image)
                    if count == 0 and single:
                        raise ValueError(f"no face found in {job.source}: nothing to swap, nothing written")
                    if count == 0:
                        log.warning("no face in %s: copied unchanged", job.source)
                    write_bgr_atomic(job.target, out)
                    written, faces = written + 1, faces + count
                else:
                    report = pipeline.swap_video(
                        job.source, job.target, cfg.video.audio, dict(cfg.video.writer), cfg.progress
                    )
                    log.info(
                        "%s: %d frames (%d with faces, %d faces swapped) in %.1f s -> %s", job.source,
                        report.frames, report.frames_with_faces, report.faces, report.seconds, job.target,
                    )  # fmt: skip
                    if report.faces == 0:
                        log.warning(
                            "no face found in any frame of %s: the video was copied unchanged", job.source
                        )
                    written, faces = written + 1, faces + report.faces
            except (ValueError, FileNotFoundError, RuntimeError, ImportError) as err:
                log.error("%s", err)
                failed.append(str(job.source))
        seconds = time.perf_counter() - start
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in pipeline.timings.items())
        log.info("stage times: %s (total %.1f s)", timing, seconds)

    log.info("wrote %d output(s) with %d face(s) swapped to %s; kept %d existing; %d failed",
             written, faces, cfg.output, len(kept), len(failed))  # fmt: skip
    if faces == 0 and not (kept and not todo):
        log.error("nothing was swapped")
        return 1
    return 0


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
def main(cfg: DictConfig) -> None:
    status = infer(cfg)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
