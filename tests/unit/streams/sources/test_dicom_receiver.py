"""The C-STORE allow-list: calling AE titles, optionally from given addresses."""

from __future__ import annotations

import pytest

from streams.sources.dicom_receiver import PeerAllowList
from streams.sources.refusals import IngressRefusalValues as R

pytestmark = pytest.mark.unit


def test_ae_titles_and_networks() -> None:
    peers = PeerAllowList.of([" CT_SCANNER1 ", "PACS"], ["10.1.0.0/16", "192.168.5.7", "fd00::/8"])
    assert peers.refusal("CT_SCANNER1", "10.1.200.3") is None
    assert peers.refusal("PACS ", "192.168.5.7") is None  # AE titles are space-padded on the wire
    assert peers.refusal("PACS", "fd00::12") is None
    assert peers.refusal("PACS", "192.168.5.8") is R.UNKNOWN_CALLING_HOST
    assert peers.refusal("pacs", "10.1.0.1") is R.UNKNOWN_CALLING_AE  # AE titles are exact
    assert peers.refusal("INTRUDER", "10.1.0.1") is R.UNKNOWN_CALLING_AE
    assert peers.refusal("PACS", "not-an-address") is R.UNKNOWN_CALLING_HOST


def test_any_address_without_networks_and_nobody_without_titles() -> None:
    assert PeerAllowList.of(["PACS"]).refusal("PACS", "203.0.113.9") is None
    assert PeerAllowList.of([]).refusal("PACS", "127.0.0.1") is R.UNKNOWN_CALLING_AE


def test_a_malformed_network_is_refused_at_start() -> None:
    with pytest.raises(ValueError):
        PeerAllowList.of(["PACS"], ["pacs.hospital.example"])
