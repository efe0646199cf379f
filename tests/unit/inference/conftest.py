"""Real DICOM for the inference unit tests, derived from the COVID-CT-MD series in ../shared/data.

Each fixture writes its files under a temporary folder (nothing is copied into the repository):
slabs of the real normal001 chest CT as single-frame series, and the same slab converted by
highdicom into one Legacy Converted Enhanced CT multi-frame image. Skipped only where the real
data folder is absent on the machine.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pytest
from paths import SHARED_DATA
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

#: normal001 slices sorted along z (feet to head): a slab through the lungs (about 1 L of
#: lung air), and the upper abdomen below the lungs (none).
CHEST_SLAB = slice(72, 96)
ABDOMEN_SLAB = slice(0, 12)


@pytest.fixture(scope="session")
def covid_ct_md() -> Path:
    """The COVID-CT-MD folder (P001, normal001, slice labels)."""
    path = SHARED_DATA / "dicom" / "covid-ct-md"
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent on this machine (see its README)")
    return path


@pytest.fixture(scope="session")
def normal001_slices(covid_ct_md: Path) -> list[Dataset]:
    """normal001's images, decompressed, sorted along z."""
    datasets = []
    for file in (covid_ct_md / "normal001").iterdir():
        ds = dcmread(file)
        ds.decompress()
        datasets.append(ds)
    return sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))


@pytest.fixture(scope="session")
def chest_slices(normal001_slices: list[Dataset]) -> list[Dataset]:
    """The chest slab's datasets (shared: copy before editing)."""
    return normal001_slices[CHEST_SLAB]


@pytest.fixture(scope="session")
def abdomen_slices(normal001_slices: list[Dataset]) -> list[Dataset]:
    """The upper abdomen's datasets (shared: copy before editing)."""
    return normal001_slices[ABDOMEN_SLAB]


def _write(folder: Path, datasets: list[Dataset]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, ds in enumerate(datasets):
        ds.save_as(folder / f"slice{index:03d}.dcm", enforce_file_format=True)
    return folder


@pytest.fixture(scope="session")
def chest_slab(normal001_slices: list[Dataset], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 real 512x512 slices through both lungs, one file each."""
    return _write(tmp_path_factory.mktemp("chest") / "slab", normal001_slices[CHEST_SLAB])


@pytest.fixture(scope="session")
def abdomen_slab(normal001_slices: list[Dataset], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real slices of the upper abdomen: a CT volume without lungs."""
    return _write(tmp_path_factory.mktemp("abdomen") / "slab", normal001_slices[ABDOMEN_SLAB])


@pytest.fixture(scope="session")
def enhanced_ct(normal001_slices: list[Dataset], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chest slab as one multi-frame image (per-frame functional groups), in a folder."""
    image = hd.legacy.LegacyConvertedEnhancedCTImage(
        normal001_slices[CHEST_SLAB],
        series_instance_uid=generate_uid(entropy_srcs=["enhanced-ct-series"]),
        series_number=9,
        sop_instance_uid=generate_uid(entropy_srcs=["enhanced-ct-image"]),
        instance_number=1,
    )
    folder = tmp_path_factory.mktemp("enhanced") / "slab"
    folder.mkdir()
    image.save_as(folder / "enhanced.dcm", enforce_file_format=True)
    return folder
