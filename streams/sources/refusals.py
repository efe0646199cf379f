"""Refusals at the door: who was turned away by an ingress, and why (counted and logged).

A refusal happens before any clinical data is read (no token, a token without the scope, a
DICOM peer not on the allow-list), so there is no payload to dead-letter: it is counted in
``ctriage_ingress_refusals_total{source, reason}`` and logged with the peer (an address, an AE
title, a client name: never patient data).
"""

from __future__ import annotations

import logging
from enum import StrEnum

from streams.metrics import INGRESS_REFUSALS

logger = logging.getLogger(__name__)


class IngressRefusalValues(StrEnum):
    """Why an ingress refused a request or an association (closed list)."""

    MISSING_TOKEN = "missing_token"  # no Authorization: Bearer header
    INVALID_TOKEN = "invalid_token"  # unknown token, bad signature, wrong issuer or audience
    EXPIRED_TOKEN = "expired_token"  # a JWT past its exp (or before its nbf)
    INSUFFICIENT_SCOPE = "insufficient_scope"  # a known client without the write scope needed
    UNKNOWN_CALLING_AE = "unknown_calling_ae"  # C-STORE from an AE title not allowed
    UNKNOWN_CALLING_HOST = "unknown_calling_host"  # an allowed AE title from another address


def count_refusal(source: str, reason: IngressRefusalValues, peer: str, detail: str) -> None:
    """Count and log one refusal (``peer``: address, AE title or client; never patient data)."""
    INGRESS_REFUSALS.labels(source=source, reason=reason.value).inc()
    logger.warning("%s refused %s: %s (%s)", source, peer, reason.value, detail)
