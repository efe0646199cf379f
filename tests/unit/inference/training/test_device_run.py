"""The one-call GPU recipe: runs without the runtime dependencies, returns models, is scored here.

Needs the ``train`` extra (torch); CI never trains, so this runs where training runs:
``.venv-train/bin/python -m pytest tests/unit/inference/training``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inference.training.data import SliceSet, load_medseg  # noqa: E402
from inference.training.device_run import crop_turn_flip_index, random_patch, score  # noqa: E402
from inference.training.packed import write_pack  # noqa: E402

pytestmark = pytest.mark.unit

#: what the lent GPU machine does not have: importing any of them there would fail
ABSENT_THERE = ("PIL", "scipy", "pydicom", "onnxruntime", "tritonclient", "highdicom", "pydantic")


def _numpy_geometry(image: np.ndarray, crop: int, y0: int, x0: int, turns: int, flip: bool):
    """train_lesion.augment's geometry, step by step."""
    s = image.shape[0]
    idx = (np.arange(s) * crop / s).astype(int)
    out = np.rot90(image[np.ix_(y0 + idx, x0 + idx)], turns)
    return out[:, ::-1] if flip else out


def test_the_batched_index_moves_pixels_as_the_cpu_augmentation_does() -> None:
    rng = np.random.default_rng(7)
    s, n = 32, 16
    images = rng.random((n, s, s)).astype(np.float32)
    crop = rng.integers(int(0.6 * s), s + 1, n)
    y0 = np.array([rng.integers(0, s - c + 1) for c in crop])
    x0 = np.array([rng.integers(0, s - c + 1) for c in crop])
    turns = np.arange(n) % 4
    flip = (np.arange(n) // 4) % 2 == 1
    flat = crop_turn_flip_index(s, *(torch.from_numpy(a) for a in (crop, y0, x0, turns, flip)))
    moved = torch.from_numpy(images).reshape(n, -1).gather(1, flat).view(n, s, s).numpy()
    for k in range(n):
        expected = _numpy_geometry(images[k], crop[k], y0[k], x0[k], turns[k], flip[k])
        np.testing.assert_array_equal(moved[k], expected)


def test_a_patch_is_one_window_of_the_slice_shared_by_image_and_masks() -> None:
    n, s, patch = 6, 24, 10
    images = torch.arange(n * s * s, dtype=torch.float32).view(n, s, s)
    classes = (images.long() * 7) % 3
    gen = torch.Generator().manual_seed(3)
    x, cls = random_patch((images, classes), patch, gen)
    assert x.shape == cls.shape == (n, patch, patch)
    for k in range(n):
        start = int(x[k, 0, 0]) - k * s * s
        y0, x0 = divmod(start, s)
        assert y0 + patch <= s and x0 + patch <= s
        torch.testing.assert_close(x[k], images[k, y0 : y0 + patch, x0 : x0 + patch])
        torch.testing.assert_close(cls[k], classes[k, y0 : y0 + patch, x0 : x0 + patch])
    assert len({int(x[k, 0, 0]) - k * s * s for k in range(n)}) > 1  # windows differ


@pytest.fixture(scope="module")
def small_pack(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MedSeg slices, and a CT-Seg-shaped set made of them (lung masks known)."""
    medseg = load_medseg(shared_data / "ct-lesions")
    lung = (medseg.images > 0.3).astype(np.uint8)
    covid = SliceSet(medseg.images, (medseg.classes > 0).astype(np.uint8), lung, True,
                     medseg.names)  # fmt: skip
    path = tmp_path_factory.mktemp("pack") / "lesions.npz.xz"
    write_pack(path, covid, medseg, every=5)
    return path


def _there(repo_root: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``on_device.py COMMAND ARGS`` with the modules the lent machine lacks made unimportable."""
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in ABSENT_THERE)
    launcher = repo_root / "inference" / "training" / "on_device.py"
    code = f"import runpy, sys; {block}; sys.argv = sys.argv[1:]; " \
        f"runpy.run_path({str(launcher)!r}, run_name='__main__')"  # fmt: skip
    return subprocess.run([sys.executable, "-c", code, "on_device.py", command, *args],
                          capture_output=True, text=True, timeout=600, cwd=repo_root)  # fmt: skip


def _train_there(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _there(repo_root, "train", *args)


def test_the_served_networks_are_timed_without_the_runtime(repo_root: Path, tmp_path: Path) -> None:
    """What a lent GPU measures of the served models: the committed files, one by one and as
    the large variant's ensemble (here on the CPU, 4 slices)."""
    repository = repo_root / "inference" / "model_repository"
    members = [
        repository / "lesion_unet_onnx" / "1" / "model.onnx",
        repository / "lesion_unet_large" / "members" / "medseg_scratch_fold0.onnx",
    ]
    out = tmp_path / "served.json"
    done = _there(repo_root, "time", "--out", str(out), "--device", "cpu", "--study-slices", "4",
                  *(arg for m in members for arg in ("--member", str(m))))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["slices"] == 4
    assert list(report["networks"]) == ["model.onnx", "medseg_scratch_fold0.onnx", "ensemble"]
    assert all(n["fp32_s_per_study"] > 0 for n in report["networks"].values())


def test_trains_every_fold_without_the_runtime_then_scores_here(
    repo_root: Path, small_pack: Path, shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done = _train_there(repo_root, "--pack", str(small_pack), "--out", str(out), "--variant",
                        "tiny=4,8,16,32@2", "--batch", "4", "--study-slices", "8")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    models = run["variants"]["tiny"]["models"]
    assert list(models) == ["fold0", "fold1", "fold2", "fold3", "fold4", "final"]
    assert all(m["presentations"] == 8 for m in models.values())
    held = [name for k in range(5) for name in models[f"fold{k}"]["held_out"]]
    assert sorted(held, key=int) == list(run["medseg_names"])  # each slice held out once
    assert run["variants"]["tiny"]["network"]["fp32_s_per_study"] > 0
    assert sorted(p.name for p in (out / "tiny").iterdir()) == sorted(f"{m}.pt" for m in models)

    score(type("Args", (), {"run_dir": out, "data": shared_data / "ct-lesions"})())
    cv = json.loads((out / "tiny" / "crossval.json").read_text())
    assert cv["slices_with_class"]["infection"] == 50
    assert 0.0 <= cv["mean_over_slices"]["infection"]["dice"] <= 1.0
    assert (out / "tiny" / "final.onnx").exists()  # exported here, ready for the repository


def test_a_model_that_cannot_finish_before_the_deadline_is_not_exported(
    repo_root: Path, small_pack: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done = _train_there(repo_root, "--pack", str(small_pack), "--out", str(out), "--variant",
                        "tiny=4,8,16,32@2", "--deadline-s", "0")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    models = json.loads((out / "run.json").read_text())["variants"]["tiny"]["models"]
    assert models == {"fold0": {"stopped": "--deadline-s", "stopped_at_step": 0,
                                "seconds": models["fold0"]["seconds"]}}  # fmt: skip
    assert not list(out.rglob("*.pt"))


def test_chosen_models_train_on_patches_across_sessions(
    repo_root: Path, small_pack: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done = _train_there(repo_root, "--pack", str(small_pack), "--out", str(out), "--variant",
                        "tiny=4,8,16,32@2", "--batch", "4", "--patch", "64", "--skip-folds", "2",
                        "--max-models", "1", "--study-slices", "4")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["patch"] == 64
    assert list(run["variants"]["tiny"]["models"]) == ["fold2"]
    assert [p.name for p in (out / "tiny").iterdir()] == ["fold2.pt"]
    more = _train_there(repo_root, "--pack", str(small_pack), "--out", str(out), "--variant",
                        "tiny=4,8,16,32@2", "--batch", "4", "--patch", "64", "--skip-folds", "5",
                        "--study-slices", "4")  # fmt: skip
    assert more.returncode == 0, more.stderr[-3000:]
    models = json.loads((out / "run.json").read_text())["variants"]["tiny"]["models"]
    assert list(models) == ["fold2", "final"]  # a later session adds to the same run
    assert {m["device"] for m in models.values()} == {"cpu"}  # each model names its machine
    other = _train_there(repo_root, "--pack", str(small_pack), "--out", str(out), "--variant",
                         "tiny=4,8,16,32@2", "--batch", "4", "--skip-folds", "5")  # fmt: skip
    assert other.returncode != 0 and "another recipe" in other.stderr
