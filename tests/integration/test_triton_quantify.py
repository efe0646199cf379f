"""The lesion_threshold model on a real Triton server agrees with the in-process quantifier.

Uses the session ``triton_server`` fixture (tests/conftest.py), which serves
inference/model_repository and fails loudly when the server cannot start.
"""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from deploy.triton import TritonServer
from inference.biomarkers import quantify_threshold
from inference.client import THRESHOLD_MODEL, TritonQuantifier
from inference.exceptions import (
    InferenceRejected,
    TritonServerError,
    TritonTimeout,
    TritonUnavailable,
)
from inference.phantom import Phantom, chest_phantom
from inference.volume import load_series
from streams.cli.quantify import app as quantify_app

pytestmark = pytest.mark.integration

FP32_REL = 1e-6  # outputs travel as FP32


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return chest_phantom(seed=11, vessels=True)


@pytest.fixture()
def quantifier(triton_server: TritonServer) -> TritonQuantifier:
    return TritonQuantifier(triton_server.http_url, model_name=THRESHOLD_MODEL, timeout_s=120)


def test_model_is_ready_with_a_version(quantifier: TritonQuantifier) -> None:
    assert quantifier.is_ready()
    assert quantifier.model_version() == "1"


def test_triton_matches_in_process_on_phantom(
    quantifier: TritonQuantifier, phantom: Phantom
) -> None:
    served = quantifier.quantify_array(phantom.hu, phantom.spacing_mm)
    local = quantify_threshold(phantom.hu, phantom.spacing_mm)
    assert served.as_dict() == pytest.approx(local.as_dict(), rel=FP32_REL)
    assert served.lesion_volume_ml == pytest.approx(phantom.lesion_volume_ml, rel=0.05)


def test_triton_matches_in_process_on_p001(quantifier: TritonQuantifier, shared_data: Path) -> None:
    volume = load_series(shared_data / "dicom" / "covid-ct-md" / "P001")
    served = quantifier.quantify(volume)
    local = quantify_threshold(volume.hu, volume.spacing_mm)
    assert served.as_dict() == pytest.approx(local.as_dict(), rel=FP32_REL)
    assert quantifier.model_version() == "1"


@pytest.mark.parametrize(
    ("hu", "spacing"),
    [
        (np.zeros((0, 0, 0), dtype=np.int16), (1.0, 1.0, 1.0)),  # empty: refused by the model
        (np.zeros((2, 16, 16), dtype=np.int16), (1.0, 1.0, 1.0)),  # too thin: by the model
        (np.zeros((8, 16, 16), dtype=np.int16), (1.0, -1.0, 1.0)),  # bad spacing: by the model
        (np.zeros((16, 16), dtype=np.int16), (1.0, 1.0, 1.0)),  # wrong rank: by Triton
        (np.zeros((8, 16, 16), dtype=np.int16), (1.0, 1.0)),  # wrong spacing shape: by Triton
    ],
)
def test_bad_requests_are_rejected(
    quantifier: TritonQuantifier, hu: np.ndarray, spacing: tuple[float, float, float]
) -> None:
    with pytest.raises(InferenceRejected):
        quantifier.quantify_array(hu, spacing)
    assert quantifier.is_ready()  # the model survives bad requests


def test_unknown_model_is_a_server_error(triton_server: TritonServer) -> None:
    quantifier = TritonQuantifier(triton_server.http_url, model_name="no_such_model")
    with pytest.raises(TritonServerError, match="no_such_model"):
        quantifier.quantify_array(np.zeros((8, 16, 16), dtype=np.int16), (1.0, 1.0, 1.0))


def test_closed_port_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TritonUnavailable, match=f"127.0.0.1:{port}"):
        TritonQuantifier(f"127.0.0.1:{port}", timeout_s=5).quantify_array(
            np.zeros((8, 16, 16), dtype=np.int16), (1.0, 1.0, 1.0)
        )


def test_short_timeout_maps_to_triton_timeout(
    triton_server: TritonServer, phantom: Phantom
) -> None:
    quantifier = TritonQuantifier(triton_server.http_url, timeout_s=0.01)
    with pytest.raises(TritonTimeout):
        quantifier.quantify_array(phantom.hu, phantom.spacing_mm)


def test_one_quantifier_shared_by_threads(quantifier: TritonQuantifier, phantom: Phantom) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(
            pool.map(lambda _: quantifier.quantify_array(phantom.hu, phantom.spacing_mm), range(3))
        )
    assert all(r == results[0] for r in results)


def test_cli_quantifies_on_triton(
    triton_server: TritonServer, shared_data: Path, tmp_path: Path
) -> None:
    root = typer.Typer()
    root.add_typer(quantify_app, name="quantify")

    @root.command()
    def other() -> None:
        """A sibling, so the root is a group as in streams.cli."""

    out = tmp_path / "p001.json"
    series = shared_data / "dicom" / "covid-ct-md" / "P001"
    result = CliRunner().invoke(
        root,
        [
            "quantify",
            str(series),
            "--model",
            "lesion_threshold",
            "--url",
            triton_server.http_url,
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["model"] == "lesion_threshold" and written["model_version"] == "1"
    assert 2.0 < written["biomarkers"]["lesion_percent"] < 10.0
