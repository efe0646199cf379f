"""Launch a local Orthanc PACS (Debian packages ``orthanc`` and ``orthanc-dicomweb``).

Used by the ingestion tests as the hospital's PACS: it sends studies to our C-STORE receiver and
serves them over DICOMweb. Layout under ``run_dir``::

    orthanc.json  storage/  orthanc.log  orthanc.pid

Ports are explicit and on loopback only (``RemoteAccessAllowed`` false); the packaged service is
never used (it does not start by itself on these machines anyway).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from deploy.exceptions import ServiceDependencyMissing, ServiceReason
from deploy.process import LocalService, PidFile

logger = logging.getLogger(__name__)

SERVICE = "orthanc"
HOST = "127.0.0.1"
INSTALL_HINT = "install it with: apt-get install orthanc orthanc-dicomweb"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def orthanc_binary() -> str:
    """Path of the Orthanc executable (Debian puts it in /usr/sbin, often not on PATH)."""
    found = shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").is_file() else None
    )
    if found is None:
        raise ServiceDependencyMissing(
            SERVICE, ServiceReason.BINARY_MISSING, f"Orthanc not found; {INSTALL_HINT}"
        )
    return found


def render_config(
    storage: Path,
    http_port: int,
    dicom_port: int,
    aet: str,
    modalities: dict[str, tuple[str, str, int]],
) -> dict[str, object]:
    """Orthanc's JSON configuration: loopback, no authentication, DICOMweb on."""
    if not DICOMWEB_PLUGIN.is_file():
        raise ServiceDependencyMissing(
            SERVICE, ServiceReason.PACKAGE_MISSING, f"{DICOMWEB_PLUGIN} missing; {INSTALL_HINT}"
        )
    return {
        "Name": "ctriage-orthanc",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,  # loopback clients only
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "DicomModalities": {name: list(peer) for name, peer in modalities.items()},
        "StableAge": 2,  # seconds without a new instance before Orthanc calls a study stable
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
        "HttpTimeout": 60,
    }


class OrthancServer(LocalService):
    """A local Orthanc on explicit HTTP and DICOM ports with its own storage folder."""

    def __init__(
        self,
        run_dir: Path,
        http_port: int = 18042,
        dicom_port: int = 14242,
        aet: str = "ORTHANC",
        modalities: dict[str, tuple[str, str, int]] | None = None,
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.http_port = http_port
        self.dicom_port = dicom_port
        self.aet = aet
        self.modalities = dict(modalities or {})
        self.config_path = self.run_dir / "orthanc.json"
        self.log_path = self.run_dir / "orthanc.log"
        self.url = f"http://{HOST}:{http_port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self.service = SERVICE
        self.pid_file = PidFile(
            self.run_dir / "orthanc.pid", markers=("Orthanc", str(self.config_path))
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        """Write the configuration, launch Orthanc and wait until ``/system`` answers."""
        self._refuse_start(HOST, (self.http_port, self.dicom_port), self.url)
        binary = orthanc_binary()
        storage = self.run_dir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = render_config(storage, self.http_port, self.dicom_port, self.aet, self.modalities)
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        self._launch([binary, str(self.config_path)], self.log_path, timeout_s)

    def is_healthy(self) -> bool:
        """Tell whether the REST API answers ``/system``."""
        try:
            with urllib.request.urlopen(f"{self.url}/system", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
