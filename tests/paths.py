"""Where the tests find the checkout and the real data (importable from any test folder)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The real public data beside the checkout (``../shared/data``; its README gives provenance).
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
#: The shipped risk models.
RISK_MODELS = REPO_ROOT / "triage" / "risk" / "models"
