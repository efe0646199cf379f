"""We pull studies from Orthanc over DICOMweb, and store SEG + SR back into the study (STOW-RS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_factory import write_ct_series
from dicomweb_client.api import DICOMwebClient
from orthanc_client import upload
from pydicom.dataset import Dataset

from deploy.orthanc import OrthancServer
from inference.biomarkers import quantify_threshold
from inference.dicom_results import build_results, source_headers
from inference.volume import load_series
from streams.records import DeadLetter
from streams.sources.dicomweb import DicomwebPoller, store_results
from streams.sources.publish import StudyArrival
from streams.sources.study_store import StudyStore

pytestmark = pytest.mark.integration


def test_poll_fetch_quantify_and_store_results_back(
    orthanc_server: OrthancServer, tmp_path: Path
) -> None:
    study_uid = "1.2.826.0.1.3680043.8.498.4242"
    write_ct_series(tmp_path / "series", 12, study_uid=study_uid)
    upload(orthanc_server, tmp_path / "series")
    arrivals: list[StudyArrival] = []
    rejected: list[DeadLetter] = []
    ticks = iter([0.0, 0.5, 10.0, 20.0])
    poller = DicomwebPoller(
        orthanc_server.dicomweb_url,
        StudyStore(tmp_path / "store"),
        arrivals.append,
        rejected.append,
        stability_s=5.0,
        clock=lambda: next(ticks),
    )
    assert poller.poll_once() == []  # first sight: not yet stable
    assert poller.poll_once() == []  # unchanged for 0.5 s < 5 s
    [arrival] = [a for a in poller.poll_once() if a.study_uid == study_uid]
    # the session's Orthanc also holds other tests' studies: only this study's letters count
    assert arrival.instances == 12 and not [d for d in rejected if study_uid in d.payload]
    assert all(a.study_uid != study_uid for a in poller.poll_once())  # taken once

    volume = load_series(arrival.study_dir)
    lung = np.zeros(volume.hu.shape, dtype=bool)
    lung[2:10, 4:28, 4:28] = True
    lesion = np.zeros_like(lung)
    lesion[5:7, 8:12, 8:12] = True
    biomarkers = quantify_threshold(volume.hu, volume.spacing_mm).as_dict()
    results = build_results(
        source_headers(volume.source_files), lung, lesion, biomarkers, "lesion_threshold", "1"
    )
    store_results(orthanc_server.dicomweb_url, [results.segmentation, results.report])

    series = DICOMwebClient(orthanc_server.dicomweb_url).search_for_series(study_uid)
    modalities = sorted(s["00080060"]["Value"][0] for s in series)
    assert modalities == ["CT", "SEG", "SR"]


def test_study_with_uuid_uids_is_fetched_and_gets_its_results(
    orthanc_server: OrthancServer, tmp_path: Path
) -> None:
    """Anonymisers write UUID UIDs (three of four public COVID-CT-MD series): accepted, stored
    under hashed keys, and the SEG and SR go back into the study under its own UID."""
    study_uid = "896911bf-1143-4c8d-8f04-f3cd1a7f6204"
    series_uid = "7c0d0c9e-0001-0002-0003-000000000004"

    def uuid_uids(k: int, ds: Dataset) -> None:
        del ds.StudyInstanceUID, ds.SeriesInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid  # validation off

    write_ct_series(tmp_path / "series", 12, edit=uuid_uids)
    upload(orthanc_server, tmp_path / "series")
    arrivals: list[StudyArrival] = []
    rejected: list[DeadLetter] = []
    store = StudyStore(tmp_path / "store")
    poller = DicomwebPoller(
        orthanc_server.dicomweb_url, store, arrivals.append, rejected.append, stability_s=0
    )
    [arrival] = [a for a in poller.poll_once() if a.study_uid == study_uid]
    # the session's Orthanc also holds other tests' studies: only this study's letters count
    assert arrival.instances == 12 and not [d for d in rejected if study_uid in d.payload]
    assert arrival.study_dir == store.study_dir(study_uid) and study_uid not in str(
        arrival.study_dir
    )

    volume = load_series(arrival.study_dir)
    assert (volume.study_uid, volume.series_uid) == (study_uid, series_uid)
    assert set(volume.nonconformant_uids) == {"StudyInstanceUID", "SeriesInstanceUID"}
    lung = np.zeros(volume.hu.shape, dtype=bool)
    lung[2:10, 4:28, 4:28] = True
    biomarkers = quantify_threshold(volume.hu, volume.spacing_mm).as_dict()
    results = build_results(
        source_headers(volume.source_files),
        lung,
        np.zeros_like(lung),
        biomarkers,
        "lesion_threshold",
        "1",
    )
    store_results(orthanc_server.dicomweb_url, [results.segmentation, results.report])
    client = DICOMwebClient(orthanc_server.dicomweb_url, permissive_uid=True)
    series = client.search_for_series(study_uid)
    assert sorted(s["00080060"]["Value"][0] for s in series) == ["CT", "SEG", "SR"]
