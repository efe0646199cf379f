"""We pull studies from Orthanc over DICOMweb, and store SEG + SR back into the study (STOW-RS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_factory import write_ct_series
from dicomweb_client.api import DICOMwebClient
from test_orthanc_receiver import upload

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
    assert arrival.instances == 12 and not rejected
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
