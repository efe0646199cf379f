"""Typed settings for every ctriage service: the only module that reads the environment.

Every field can be set as ``CTRIAGE_<SECTION>__<FIELD>`` (for example
``CTRIAGE_KAFKA__BOOTSTRAP_SERVERS``). Libraries (``inference``, ``triage``) never read settings:
the CLI and the stream wiring pass explicit values to them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel, frozen=True):
    """Where the broker is and how the local one is launched."""

    bootstrap_servers: str = "127.0.0.1:19092"
    controller_port: int = 19093
    partitions: int = 4
    # PLAINTEXT (the local demo) or SASL_SSL (production, `services up` secured): every client
    # takes these through streams.kafka_security; each service has its own username
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None  # SCRAM-SHA-512 when SASL is on and this is unset
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: Path | None = None  # PEM CA of the brokers' certificates (None: system CAs)
    heap_mb: int = 768
    # the local cluster of `ctriage services up` (1: one combined broker+controller, the demo;
    # 3: three on loopback, node i on ports bootstrap+100*i and controller+100*i, clear of the
    # workers' metrics_port+N; `services up --kafka-nodes 3` does the same)
    nodes: int = Field(default=1, ge=1)
    # topics' replication factor and min.insync.replicas (None: 1/1 on one node, 3/2 on three);
    # producers send with acks=all
    replication_factor: int | None = Field(default=None, ge=1)
    min_insync_replicas: int | None = Field(default=None, ge=1)

    @property
    def replication(self) -> int:
        """Replication factor of every topic (the setting, or as many copies as nodes, <= 3)."""
        return self.replication_factor or min(self.nodes, 3)

    @property
    def min_insync(self) -> int:
        """``min.insync.replicas``: the setting, or one less than the replication (at least 1)."""
        return self.min_insync_replicas or max(1, self.replication - 1)


class TritonSettings(BaseModel, frozen=True):
    """Where the inference server is and which model quantifies lesions."""

    http_port: int = 18000
    grpc_port: int = 18001
    metrics_port: int = 18002
    host: str = "127.0.0.1"
    model_name: str = "lesion_unet"  # or lesion_threshold, the transparent baseline
    model_version: str = "1"
    timeout_s: float = 60.0
    model_repository: Path = REPO_ROOT / "inference" / "model_repository"
    # an outage (Triton unreachable): each study is retried with exponential back-off (first
    # wait, doubling, capped) for at most this long, then dead-lettered as triton_unavailable
    # (`ctriage dlq replay` sends it again once Triton is back); 0: no retry
    outage_retry_s: float = Field(default=60.0, ge=0)
    retry_backoff_s: float = Field(default=0.5, gt=0)
    retry_backoff_max_s: float = Field(default=8.0, gt=0)

    @property
    def http_url(self) -> str:
        """Host:port of the HTTP endpoint, as tritonclient expects it."""
        return f"{self.host}:{self.http_port}"


class PseudonymSettings(BaseModel, frozen=True):
    """Keyed HMAC used to pseudonymise patient identifiers at ingress."""

    key: SecretStr = SecretStr("ctriage-demo-key-change-me")
    key_version: str = "k1"


class StoreSettings(BaseModel, frozen=True):
    """The reporting store: PostgreSQL (the local one of ``ctriage services up`` by default).

    Any SQLAlchemy URL works; ``sqlite:///PATH`` serves a laptop without PostgreSQL.
    """

    url: str = "postgresql+psycopg://ctriage@127.0.0.1:15432/ctriage"
    local_port: int = 15432  # where ``ctriage services up`` starts its PostgreSQL


class MonitoringSettings(BaseModel, frozen=True):
    """The local Prometheus that scrapes the worker and Triton."""

    prometheus_port: int = 19090
    scrape_interval_s: float = 5.0


class WorkerSettings(BaseModel, frozen=True):
    """The Faust worker."""

    app_id: str = "ctriage"
    web_port: int = 16066
    metrics_port: int = 19100
    data_dir: Path = REPO_ROOT / ".ctriage" / "worker"
    # several workers side by side (docs/fault-tolerance.md): worker N listens on web_port + N
    # and metrics_port + N, keeps its state in data_dir-N (0: the ports and folder as set)
    index: int = Field(default=0, ge=0)
    # a crashed worker's partitions go to the others once the broker has missed its heartbeats
    # for this long (Faust's 60 s default stopped triage for a minute after each crash)
    session_timeout_s: float = Field(default=6.0, gt=0)
    heartbeat_interval_s: float = Field(default=1.5, gt=0)
    # address /metrics and the Faust web port listen on ("0.0.0.0" in a container, so that
    # Prometheus can scrape them; the default keeps them on this machine)
    bind_host: str = "127.0.0.1"
    risk_model_path: Path = REPO_ROOT / "triage" / "risk" / "models" / "ventilation.ubj"
    # a starting worker scores nothing until it has read triage.config to its end (each
    # hospital's levels and calibration), or for at most this long (then: the defaults, logged)
    config_catch_up_s: float = Field(default=15.0, ge=0)
    # the shipped ventilation model's operating point 0.2 (sensitivity 0.49, specificity 0.95,
    # 7 alerts per 100 studies; semi-synthetic hold-out): with intubation in 5 % of patients a
    # calibrated probability rarely reaches 0.5
    alert_threshold: float = 0.2
    threshold_version: str = "t1"
    hospital: str = "demo-hospital"
    icu_capacity_beds: int = 12
    forecast_days: int = 7  # ICU forecast horizon (1..14)
    capacity_breach_probability: float = 0.2  # breach alert when P(over capacity) reaches this
    # worsening alert (triage.alerts.worsening; reasoning in docs/longitudinal.md): a rise of
    # this many lesion percentage points or CT severity points, or a fall of this many points
    # of well-aerated lung, within this many days
    worsening_lesion_rise_points: float = Field(default=10.0, gt=0)
    worsening_severity_rise_points: float = Field(default=5.0, gt=0)
    worsening_aerated_fall_points: float = Field(default=10.0, gt=0)
    worsening_within_days: float = Field(default=7.0, gt=0)
    capacity_refresh_s: float = 3600.0  # scheduled recompute of live forecasts (0: off)
    icu_ventilators: int = 8  # ventilators of an ICU whose count is not configured otherwise
    # lognormal ICU stay and ventilation duration of the forecasts (triage.capacity.census
    # ICU_STAY, fitted on REAL Italian data, and VENTILATION, assumed); fit a hospital's own
    # stay with `ctriage capacity fit-stay --csv`
    icu_stay_mean_days: float = Field(default=14.1, gt=0)
    icu_stay_sigma: float = Field(default=0.72, gt=0)
    ventilation_mean_days: float = Field(default=10.0, gt=0)
    ventilation_sigma: float = Field(default=0.7, gt=0)
    # staffed beds / ventilators per "hospital" or "hospital/unit" (JSON); wins over Locations
    unit_capacity: dict[str, dict[str, int]] = Field(default_factory=dict)
    # FHIR R4 Locations (ICU units, beds) and ventilator Devices: Bundle JSON or NDJSON file
    capacity_locations: Path | None = None
    reader_memory_limit_mb: int = 6144  # address space of the sandboxed DICOM reader process
    reader_timeout_s: float = 300.0  # a study that takes longer to read is refused
    # fault injection for the crash tests only: the worker SIGKILLs itself the first time it
    # reaches one of these named points, or plays a consumer fault once (unfetch_partition,
    # read_offset_ahead: streams/failpoints.py); empty in production
    failpoints: tuple[
        Literal["alert_written_ahead", "alert_sent", "unfetch_partition", "read_offset_ahead"], ...
    ] = ()

    @property
    def own_web_port(self) -> int:
        """The Faust web port of worker ``index`` (``web_port + index``)."""
        return self.web_port + self.index

    @property
    def own_metrics_port(self) -> int:
        """The Prometheus port of worker ``index`` (``metrics_port + index``)."""
        return self.metrics_port + self.index

    @property
    def own_data_dir(self) -> Path:
        """The state folder of worker ``index`` (``data_dir``; ``data_dir-N`` for N > 0)."""
        return (
            self.data_dir
            if self.index == 0
            else self.data_dir.with_name(f"{self.data_dir.name}-{self.index}")
        )


class IngestSettings(BaseModel, frozen=True):
    """CT ingress: the study store, the C-STORE receiver and the DICOMweb poller."""

    study_store: Path = REPO_ROOT / ".ctriage" / "studies"
    ae_title: str = "CTRIAGE"
    host: str = "127.0.0.1"
    port: int = 11112
    stability_s: float = 5.0
    dicomweb_url: str = "http://127.0.0.1:8042/dicom-web"
    poll_interval_s: float = 5.0
    # STOW-RS root where each quantified study's SEG + SR is stored (None: results stay here)
    writeback_url: str | None = None
    # C-STORE peers allowed to send (MONAI Informatics Gateway's rejectUnknownSources): calling
    # AE titles, and optionally their addresses (IPs or networks such as "10.1.0.0/16"; empty:
    # any address). Every other association is rejected (A-ASSOCIATE-RJ) and counted. With no
    # calling AE title configured every association is rejected, unless reject_unknown_sources
    # is turned off (a laptop demo: then anyone who reaches the port may send).
    calling_ae_titles: tuple[str, ...] = ()
    calling_hosts: tuple[str, ...] = ()
    reject_unknown_sources: bool = True
    # Prometheus /metrics of `ctriage receive` / `ctriage poll-dicomweb` on ``host`` (None: off)
    metrics_port: int | None = None
    # DICOMweb (QIDO/WADO/STOW) authentication and TLS towards the PACS: a bearer token, or a
    # user and password (HTTP basic); a CA bundle (PEM) for a PACS whose certificate is signed by
    # the hospital's own CA (None: the system's CAs)
    dicomweb_token: SecretStr | None = None
    dicomweb_username: str | None = None
    dicomweb_password: SecretStr | None = None
    dicomweb_ca_file: Path | None = None
    dicomweb_timeout_s: float = 60.0


class FhirToken(BaseModel, frozen=True):
    """One shared-secret bearer token of the FHIR endpoint: which client, what it may write.

    ``scopes`` are SMART Backend Services scopes (``system/Observation.write``,
    ``system/*.write``, v2 ``system/Observation.c``). As for the admin API, give the token
    itself (``token``) or only its SHA-256 hex digest (``token_sha256``).
    """

    client: str
    scopes: tuple[str, ...]
    token: SecretStr | None = None
    token_sha256: str | None = None


class FhirSettings(BaseModel, frozen=True):
    """Clinical context from FHIR: the HTTP endpoint, observation window, pending, re-scoring."""

    http_host: str = "127.0.0.1"
    http_port: int = 18080
    # who may POST (docs/security.md): shared-secret bearer tokens with their scopes, and/or
    # JWTs signed with an HS256 secret or an RS256/ES256 key (PEM public key files). With none
    # configured every POST is refused (401).
    tokens: tuple[FhirToken, ...] = ()
    jwt_hs256_secrets: tuple[SecretStr, ...] = ()
    jwt_public_keys: tuple[Path, ...] = ()
    jwt_issuer: str | None = None  # required ``iss`` when set
    jwt_audience: str | None = None  # required ``aud`` when set (e.g. this endpoint's URL)
    jwt_leeway_s: float = 30.0  # clock skew tolerated on ``exp`` / ``nbf``
    # Kafka at start-up: how long to wait for the broker before giving up with a clear error,
    # and how long one request may wait for it before the sender is told to retry (503)
    kafka_wait_s: float = 60.0
    kafka_send_timeout_s: float = 10.0
    # rejected originals kept at ingress (they may hold identifiers): at most this many files
    # and bytes in $CTRIAGE_RUN_DIR/quarantine, oldest removed first; 0 files: keep none
    quarantine_max_files: int = Field(default=1000, ge=0)
    quarantine_max_mb: float = Field(default=256.0, ge=0)
    observation_window_h: float = 72.0
    pending_ttl_s: float = 300.0
    pending_max_per_patient: int = 1000
    pending_sweep_s: float = 5.0
    rescore_horizon_h: float = 24.0


class AdminToken(BaseModel, frozen=True):
    """One bearer token of the admin API: whose it is and what it may do.

    Give the token itself (``token``) or only its SHA-256 hex digest (``token_sha256``), so that
    the configuration need not hold the secret.
    """

    user: str
    role: Literal["viewer", "threshold-admin"]
    token: SecretStr | None = None
    token_sha256: str | None = None


class AdminSettings(BaseModel, frozen=True):
    """The threshold administration HTTP API (``ctriage admin-api``).

    ``CTRIAGE_ADMIN__TOKENS='[{"user": "ana", "role": "threshold-admin", "token": "..."}]'``.
    ``hospitals``: those whose policy may be changed (empty: the worker's hospital).
    """

    host: str = "127.0.0.1"
    port: int = 18090
    tokens: tuple[AdminToken, ...] = ()
    hospitals: tuple[str, ...] = ()
    read_timeout_s: float = 10.0  # catching up with triage.config at start-up


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
    monitoring: MonitoringSettings = MonitoringSettings()
    worker: WorkerSettings = WorkerSettings()
    ingest: IngestSettings = IngestSettings()
    fhir: FhirSettings = FhirSettings()
    admin: AdminSettings = AdminSettings()


def load_settings() -> Settings:
    """Read the environment once and return frozen settings."""
    return Settings()


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``CTRIAGE_*`` variables that make :func:`load_settings` rebuild ``settings``.

    How a parent (the demo, a test) hands its exact settings to a child process. Secrets are
    written in clear: the environment of one's own child is the place they already live in.
    """
    env: dict[str, str] = {}

    def put(name: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str | Path | int | float | bool):
            env[name] = str(value)
        else:
            env[name] = json.dumps(value, default=_plain)

    def _plain(value: object) -> object:
        # nested models (admin tokens) and their secrets, in the form the child parses back
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, BaseModel):
            return {k: getattr(value, k) for k in type(value).model_fields}
        return str(value)

    for field in type(settings).model_fields:
        value = getattr(settings, field)
        if isinstance(value, BaseModel):
            for sub in type(value).model_fields:
                put(f"CTRIAGE_{field.upper()}__{sub.upper()}", getattr(value, sub))
        else:
            put(f"CTRIAGE_{field.upper()}", value)
    return env
