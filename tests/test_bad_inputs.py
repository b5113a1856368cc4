"""The bad-input matrix: train, extract and infer given broken, odd or dangerous inputs. Each case checks
the outcome (exit code or exception), a message naming the file or option and what is wrong, that no
input was changed and that no partial output was left."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import CONF, FakeDetector, compose_train, run_script
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from infer import infer
from swapper.extract import METADATA, extract
from swapper.ops.checkpoint_io import loadable
from swapper.ops.exits import ConfigError, MissingFile, StartError, check_train_config
from swapper.train import run

TINY = ["debug=tiny", "logger=csv", "~callbacks.preview"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A real run directory: 4 steps of the lite default, checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    run(compose_train(TINY, out))
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _crop(path: Path, size: int = 64, shape: tuple[int, ...] | None = None, value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full(shape or (size, size, 3), value, np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


# ---------------------------------------------------------------- train: option values (at build time)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optimizer.generator.lr=-0.001", "optimizer.generator.lr=-0.001 must be a positive number"),
        ("data.batch_size=-4", "data.batch_size=-4 must be a positive integer"),
        ("data.batch_size=0", "data.batch_size=0 must be a positive integer"),
        ("trainer.max_steps=0", "trainer.max_steps=0 must be a positive integer (or -1: no limit)"),
        ("loss.l1.weight=-1", "loss.l1.weight=-1 must be a number >= 0"),
        ("image_size=0", "image_size=0 must be a positive integer"),
        ("optimizer.generator.betas=[0.5,1.5]", "optimizer.generator.betas.1=1.5 must be in [0, 1)"),
        ("data.num_workers=-1", "data.num_workers=-1 must be an integer >= 0"),
        ("morph=expression", "morph=ExpressionMorph needs real pairs with 68-point landmarks (data=pairs)"),
    ],
)
def test_bad_option_values_are_named_before_anything_is_built(override, named, tmp_path):
    cfg = compose_train([*TINY, override], tmp_path / "run")
    with pytest.raises(ConfigError) as caught:
        check_train_config(cfg)
    assert named in str(caught.value)
    with pytest.raises(ConfigError):
        run(cfg)
    assert not (tmp_path / "run").exists()  # nothing written: the check runs before the run folder fills


def test_the_default_configs_pass_the_option_check(tmp_path):
    for overrides in ([], ["discriminator=patch", "loss=[l1,adversarial]"], ["experiment=faceswap_gan_lite"]):
        check_train_config(compose_train(overrides, tmp_path))


def test_train_py_exits_2_with_the_option_name_no_traceback_and_no_run_folder(tmp_path):
    out = tmp_path / "run"
    result = run_script("train.py", *TINY, "optimizer.generator.lr=-0.001", f"hydra.run.dir={out}")
    text = result.stdout + result.stderr
    assert result.returncode == 2, text[-3000:]
    assert "optimizer.generator.lr=-0.001 must be a positive number" in text
    assert "Traceback" not in text
    assert not out.exists()  # a failed start leaves no run folder


# ---------------------------------------------------------------- train: checkpoints to resume from


def _resume(tmp_path: Path, ckpt: str, run_dir: Path | None = None, steps: int = 6):
    return run(
        compose_train([*TINY, f"trainer.max_steps={steps}", f"ckpt_path={ckpt}"], run_dir or tmp_path / "r")
    )


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(MissingFile, match=r"ckpt_path=.*nope\.ckpt: no such file"):
        _resume(tmp_path, str(tmp_path / "nope.ckpt"))


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty file \\(0 bytes\\)"),
        (b"this is not a checkpoint\n", "does not load"),
        (os.urandom(4096), "does not load"),
    ],
    ids=["zero-bytes", "text", "random-bytes"],
)
def test_unloadable_checkpoint_is_refused_with_the_reason(tmp_path, content, why):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    with pytest.raises(StartError, match=rf"bad\.ckpt: {why}"):
        _resume(tmp_path, str(bad))
    assert bad.read_bytes() == content


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_malicious_checkpoint_is_refused_and_its_code_never_runs(tmp_path):
    _Payload.marker = tmp_path / "pwned"
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Payload()}, bad)
    with pytest.raises(StartError, match=r"evil\.ckpt: does not load \(UnpicklingError"):
        _resume(tmp_path, str(bad))
    assert not _Payload.marker.exists()


def test_checkpoint_of_another_architecture_is_refused_with_the_differences(tiny_run, tmp_path):
    cfg = compose_train(
        [*TINY, "encoder.latent_size=3", f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}"],
        tmp_path / "r",
    )
    with pytest.raises(StartError, match=r"does not fit this config's model: .*other shape"):
        run(cfg)


def test_resume_last_skips_a_truncated_last_ckpt_and_says_so(tiny_run, tmp_path, caplog):
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work)
    last = work / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut short
    (work / "checkpoints" / ".last.ckpt.x1.partial").write_bytes(b"half")  # a killed save's temp file
    best = next((work / "checkpoints").glob("best-*.ckpt"))
    with caplog.at_level(logging.INFO, logger="swapper.ops.checkpoint_io"):
        _resume(tmp_path, "last", run_dir=work)
    assert f"skipped {last}: does not load" in caplog.text
    assert f"resuming from {best}" in caplog.text
    assert "removed 1 partial file" in caplog.text and not list(work.glob("checkpoints/.*.partial"))
    assert loadable(last) is None  # rewritten by the resumed run
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6


def test_resume_last_refuses_when_no_checkpoint_loads(tiny_run, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work)
    for ckpt in (work / "checkpoints").glob("*.ckpt"):
        ckpt.write_bytes(b"")
    with pytest.raises(StartError, match=r"ckpt_path=last: no checkpoint in .* loads \(skipped 2"):
        _resume(tmp_path, "last", run_dir=work)
    assert sorted(p.name for p in (work / "csv").rglob("metrics.csv")) == ["metrics.csv"]  # the log kept


def test_resume_in_the_same_folder_keeps_the_first_csv_log(tiny_run, tmp_path):
    from swapper.ops.runs import read_metrics

    work = tmp_path / "run"
    shutil.copytree(tiny_run, work)
    first = (work / "csv" / "metrics.csv").read_text()
    _resume(tmp_path, "last", run_dir=work)
    assert (work / "csv" / "metrics.csv").read_text() == first
    assert (work / "csv" / "1" / "metrics.csv").is_file()
    steps = [s for s, _ in read_metrics(work)["train/g/total"]]
    assert steps[0] == 0 and steps[-1] == 5  # 0-3 from the first start, 4-5 after the resume


# ---------------------------------------------------------------- infer


def infer_cfg(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("infer", overrides=["progress=false", *overrides])


def test_infer_refuses_output_equal_to_input_even_with_overwrite(tiny_run, tmp_path, caplog):
    photo = _crop(tmp_path / "in" / "face.png")
    before = photo.read_bytes()
    with caplog.at_level(logging.ERROR, logger="swapper.infer"):
        status = infer(infer_cfg(f"run={tiny_run}", f"input={photo}", f"output={photo}", "overwrite=true"))
    assert status == 2
    assert f"output {photo} is the input itself" in caplog.text
    assert photo.read_bytes() == before


@pytest.mark.parametrize("mode", ["crops", "frames"])
def test_infer_refuses_an_output_folder_that_would_replace_inputs(tiny_run, tmp_path, caplog, mode):
    folder = tmp_path / "faces"
    for k in range(2):
        _crop(folder / f"{k}.png", value=50 + k)
    before = _snapshot(folder)
    with caplog.at_level(logging.ERROR, logger="swapper.infer"):
        status = infer(
            infer_cfg(
                f"run={tiny_run}", f"input={folder}", f"output={folder}", "overwrite=true", f"mode={mode}"
            )
        )
    assert status == 2 and "is the input itself" in caplog.text
    assert _snapshot(folder) == before


def test_infer_output_whose_parent_is_a_file_is_a_clear_error(tiny_run, tmp_path, caplog):
    crop = _crop(tmp_path / "face.png")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with caplog.at_level(logging.ERROR, logger="swapper.infer"):
        status = infer(infer_cfg(f"run={tiny_run}", f"input={crop}", f"output={blocker / 'sub' / 'out.png'}"))
    assert status == 2
    assert f"{blocker} is a file, not a folder" in caplog.text and "Traceback" not in caplog.text
    assert blocker.read_text() == "a file, not a folder"


def test_infer_refuses_non_square_crops_unless_told_to_stretch(tiny_run, tmp_path, caplog):
    crops = tmp_path / "crops"
    _crop(crops / "ok.png")
    wide = _crop(crops / "wide.png", shape=(64, 80, 3))
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR, logger="swapper.infer"):
        status = infer(infer_cfg(f"run={tiny_run}", f"input={crops}", f"output={out}", "mode=crops"))
    assert status == 2
    assert f"{wide} is 80x64 px" in caplog.text and "stretch_crops=true" in caplog.text
    assert not out.exists()  # refused before anything was written
    args = (f"run={tiny_run}", f"input={crops}", f"output={out}", "mode=crops", "stretch_crops=true")
    assert infer(infer_cfg(*args)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ok.png", "wide.png"]


def test_infer_rescales_square_crops_of_another_size(tiny_run, tmp_path):
    crops, out = tmp_path / "crops", tmp_path / "out"
    _crop(crops / "big.png", size=128)
    assert infer(infer_cfg(f"run={tiny_run}", f"input={crops}", f"output={out}", "mode=crops")) == 0
    assert cv2.imread(str(out / "big.png")).shape == (64, 64, 3)


@pytest.mark.parametrize(
    ("name", "content"), [("empty.png", b""), ("text.jpg", b"hello, I am text\n")], ids=["zero-bytes", "text"]
)
def test_infer_undecodable_image_is_named_and_nothing_is_written(tiny_run, tmp_path, caplog, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    out = tmp_path / "out.png"
    with caplog.at_level(logging.ERROR, logger="swapper.infer"):
        status = infer(infer_cfg(f"run={tiny_run}", f"input={bad}", f"output={out}"))
    assert status == 1
    assert str(bad) in caplog.text and "nothing was swapped" in caplog.text
    assert not out.exists() and not list(tmp_path.glob(".*.tmp")) and bad.read_bytes() == content


@pytest.mark.parametrize(
    "shape_dtype",
    [((64, 64), np.uint8), ((64, 64, 4), np.uint8), ((64, 64, 3), np.uint16)],
    ids=["grayscale", "rgba", "16-bit"],
)
def test_infer_takes_grayscale_rgba_and_16_bit_crops(tiny_run, tmp_path, shape_dtype):
    shape, dtype = shape_dtype
    crops, out = tmp_path / "crops", tmp_path / "out"
    crops.mkdir()
    assert cv2.imwrite(str(crops / "c.png"), np.full(shape, 100, dtype))
    assert infer(infer_cfg(f"run={tiny_run}", f"input={crops}", f"output={out}", "mode=crops")) == 0
    assert cv2.imread(str(out / "c.png")).shape == (64, 64, 3)


def test_infer_paths_with_spaces_and_unicode(tiny_run, tmp_path):
    crops, out = tmp_path / "my crops ü", tmp_path / "sortie é 出力"
    _crop(crops / "visage ç.png")
    assert infer(infer_cfg(f"run={tiny_run}", f"input='{crops}'", f"output='{out}'", "mode=crops")) == 0
    assert (out / "visage ç.png").is_file()


@pytest.mark.parametrize("which", ["missing-run", "zero-byte-checkpoint", "malicious-checkpoint"])
def test_infer_bad_run_or_checkpoint_exits_2_naming_it(tiny_run, tmp_path, caplog, which):
    crop = _crop(tmp_path / "face.png")
    out = tmp_path / "out.png"
    if which == "missing-run":
        target, args = tmp_path / "no_run", (f"run={tmp_path / 'no_run'}",)
    else:
        target = tmp_path / "bad.ckpt"
        if which == "zero-byte-checkpoint":
            target.write_bytes(b"")
        else:
            _Payload.marker = tmp_path / "pwned"
            target.write_bytes(pickle.dumps({"state_dict": _Payload()}))
        args = (f"run={tiny_run}", f"checkpoint={target}")
    with caplog.at_level(logging.ERROR, logger="swapper.infer"):
        status = infer(infer_cfg(*args, f"input={crop}", f"output={out}"))
    assert status == 2 and target.name in caplog.text
    assert not out.exists() and not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------- extract


def _clip(path: Path, frames: int = 6) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 96))
    for k in range(frames):
        writer.write(np.full((96, 96, 3), 80 + 10 * k, np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("case", ["zero-byte-video", "truncated-video", "zero-byte-image", "faceless-photo"])
def test_extract_reports_bad_files_by_name_and_writes_no_crop(tmp_path, caplog, case):
    src = tmp_path / "in"
    src.mkdir()
    if case == "zero-byte-video":
        bad, expected = src / "v.mp4", "cannot open video"
        bad.write_bytes(b"")
    elif case == "truncated-video":
        bad, expected = _clip(src / "v.mp4"), "cannot open video"
        bad.write_bytes(bad.read_bytes()[:300])
    elif case == "zero-byte-image":
        bad, expected = src / "p.png", "cannot decode image"
        bad.write_bytes(b"")
    else:
        bad, expected = _crop(src / "dark.png", size=96, value=0), "no face found in"
    before = _snapshot(src)
    with caplog.at_level(logging.INFO, logger="swapper.extract"):
        report = extract([bad], tmp_path / "out", FakeDetector(), size=32, progress=False)
    assert not report.ok  # the entry point exits non-zero
    assert expected in caplog.text and bad.name in caplog.text
    assert not list((tmp_path / "out").glob("*.png")) and _snapshot(src) == before


def test_extract_an_empty_folder_is_an_error_naming_it(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.INFO, logger="swapper.extract"):
        try:
            report = extract(tmp_path / "empty", tmp_path / "out", FakeDetector(), progress=False)
        except (ValueError, FileNotFoundError) as err:
            assert "empty" in str(err)
        else:
            assert not report.ok and "empty" in caplog.text


def test_extract_takes_grayscale_rgba_and_16_bit_photos(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "gray.png"), np.full((96, 96), 120, np.uint8))
    cv2.imwrite(str(src / "rgba.png"), np.full((96, 96, 4), 120, np.uint8))
    cv2.imwrite(str(src / "deep.png"), np.full((96, 96, 3), 120 * 256, np.uint16))
    report = extract(src, tmp_path / "out", FakeDetector(), size=32, progress=False)
    assert report.faces == 3 and (tmp_path / "out" / METADATA).is_file()
    assert all(cv2.imread(str(p)).shape == (32, 32, 3) for p in (tmp_path / "out").glob("*.png"))
