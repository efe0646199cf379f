"""Masks claim checks: what the quantify stage saves is what the PACS write-back reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.exceptions import InvalidVolume
from inference.masks import load_masks, masks_path, save_masks
from streams.agents.writeback import masks_file_of
from streams.claim_check import StudyUnavailable
from streams.dlq import StreamReason
from streams.records import Quantification, StageTimings

pytestmark = pytest.mark.unit


def test_masks_round_trip_bit_exact_with_odd_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lung = rng.random((3, 7, 5)) > 0.3  # 105 voxels: not a multiple of 8
    lesion = lung & (rng.random(lung.shape) > 0.8)
    path = save_masks(masks_path(tmp_path, "1.2.3", "lesion_unet", "1"), lung, lesion)
    got_lung, got_lesion = load_masks(path)
    assert got_lung.dtype == bool and (got_lung == lung).all() and (got_lesion == lesion).all()
    assert not list(tmp_path.glob("*.partial"))


def test_masks_file_name_never_contains_the_uid(tmp_path: Path) -> None:
    path = masks_path(tmp_path, "../../etc/1.2.3", "lesion_unet", "1")
    assert path.parent == tmp_path and "1.2.3" not in path.name and ".." not in path.name
    assert path != masks_path(tmp_path, "../../etc/1.2.3", "lesion_unet", "2")


def test_masks_of_different_shapes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidVolume):
        save_masks(tmp_path / "m.npz", np.zeros((2, 4, 4), bool), np.zeros((2, 4, 5), bool))


def _quantification(masks_uri: str) -> Quantification:
    return Quantification(
        study_uid="1.2.3",
        patient_pseudonym="k1-abc",
        biomarkers={"lesion_percent": 1.0},
        lesion_model="lesion_unet",
        lesion_model_version="1",
        ct_time="2020-11-02T08:00:00+00:00",
        published_at=0.0,
        hospital="demo-hospital",
        timings=StageTimings(load_s=0.1, inference_s=0.2),
        masks_uri=masks_uri,
    )


def test_write_back_finds_the_masks_or_says_they_are_missing(tmp_path: Path) -> None:
    path = save_masks(tmp_path / "m.masks.npz", np.ones((2, 2, 2), bool), np.zeros((2, 2, 2), bool))
    assert masks_file_of(_quantification(path.as_uri())) == path
    assert masks_file_of(_quantification("")) is None
    path.unlink()
    with pytest.raises(StudyUnavailable) as missing:
        masks_file_of(_quantification(path.as_uri()))
    assert missing.value.reason == StreamReason.STUDY_NOT_FOUND
