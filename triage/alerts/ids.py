"""The namespace of ctriage's deterministic ids (UUID5), shared by the alert modules."""

from __future__ import annotations

import uuid

CTRIAGE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://ctriage.invalid/ids")
