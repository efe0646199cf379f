"""Typed settings for every ctriage service: the only module that reads the environment.

Every field can be set as ``CTRIAGE_<SECTION>__<FIELD>`` (for example
``CTRIAGE_KAFKA__BOOTSTRAP_SERVERS``). Libraries (``inference``, ``triage``) never read settings:
the CLI and the stream wiring pass explicit values to them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel, frozen=True):
    """Where the broker is and how the local one is launched."""

    bootstrap_servers: str = "127.0.0.1:19092"
    controller_port: int = 19093
    partitions: int = 4
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    heap_mb: int = 768


class TritonSettings(BaseModel, frozen=True):
    """Where the inference server is and which model quantifies lesions."""

    http_port: int = 18000
    grpc_port: int = 18001
    metrics_port: int = 18002
    host: str = "127.0.0.1"
    model_name: str = "lesion_threshold"
    model_version: str = "1"
    timeout_s: float = 60.0
    model_repository: Path = REPO_ROOT / "inference" / "model_repository"

    @property
    def http_url(self) -> str:
        """Host:port of the HTTP endpoint, as tritonclient expects it."""
        return f"{self.host}:{self.http_port}"


class PseudonymSettings(BaseModel, frozen=True):
    """Keyed HMAC used to pseudonymise patient identifiers at ingress."""

    key: SecretStr = SecretStr("ctriage-demo-key-change-me")
    key_version: str = "k1"


class StoreSettings(BaseModel, frozen=True):
    """The reporting store (SQLite file by default, PostgreSQL by URL)."""

    url: str = f"sqlite:///{REPO_ROOT / '.ctriage' / 'store.sqlite'}"


class WorkerSettings(BaseModel, frozen=True):
    """The Faust worker."""

    app_id: str = "ctriage"
    web_port: int = 16066
    metrics_port: int = 19100
    data_dir: Path = REPO_ROOT / ".ctriage" / "worker"
    risk_model_path: Path = REPO_ROOT / "triage" / "models" / "ventilation.ubj"
    alert_threshold: float = 0.5
    threshold_version: str = "t1"
    hospital: str = "demo-hospital"
    icu_capacity_beds: int = 12


class Settings(BaseSettings):
    """All ctriage settings; build once with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="CTRIAGE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    run_dir: Path = Field(default=REPO_ROOT / ".ctriage" / "run")
    cache_dir: Path = Field(default=Path.home() / ".cache" / "ctriage")
    kafka: KafkaSettings = KafkaSettings()
    triton: TritonSettings = TritonSettings()
    pseudonym: PseudonymSettings = PseudonymSettings()
    store: StoreSettings = StoreSettings()
    worker: WorkerSettings = WorkerSettings()


def load_settings() -> Settings:
    """Read the environment once and return frozen settings."""
    return Settings()
