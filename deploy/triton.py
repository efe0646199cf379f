"""Launch the Triton Inference Server shipped in the nvidia-pytriton wheel (CPU, Python backend).

Layout under ``run_dir``::

    backends/python/{libtriton_python.so, triton_python_backend_utils.py,
                     triton_python_backend_stub}        (stub for the model Python's version)
    tritonserver.log  triton.pid

The Python backend stub takes ``python3`` from the first directory on PATH, so the model
environment's ``bin/`` goes first; it also needs that interpreter's ``libpython3.X.so``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.exceptions import ServiceDependencyMissing, ServiceReason, ServiceStartError
from deploy.process import (
    LocalService,
    PidFile,
)

logger = logging.getLogger(__name__)

SERVICE = "triton"
INSTALL_HINT = "install it with: pip install nvidia-pytriton==0.7.0"
_PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
_STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonDistribution:
    """Where the pieces of the pytriton-bundled server live."""

    binary: Path
    python_backend: Path
    stubs: Path
    libs: Path


@dataclass(frozen=True)
class PythonEnvironment:
    """The interpreter the Python-backend models run in."""

    executable: Path
    version: str  # "3.11"
    libdir: Path  # holds libpython3.X.so


def locate_distribution() -> TritonDistribution:
    """Find tritonserver and its Python backend in the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise ServiceDependencyMissing(
            SERVICE,
            ServiceReason.PACKAGE_MISSING,
            f"nvidia-pytriton is not installed; {INSTALL_HINT}",
        )
    package = Path(spec.origin).parent
    root = package / "tritonserver"
    dist = TritonDistribution(
        binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stubs=root / "python_backend_stubs",
        libs=package.parent / "nvidia_pytriton.libs",
    )
    for needed in (dist.binary, dist.python_backend, dist.stubs, dist.libs):
        if not needed.exists():
            raise ServiceDependencyMissing(
                SERVICE, ServiceReason.PACKAGE_MISSING, f"{needed} is missing from nvidia-pytriton"
            )
    return dist


def describe_python(executable: Path | None = None) -> PythonEnvironment:
    """Version and LIBDIR of ``executable`` (default: the running interpreter)."""
    if executable is None or Path(executable) == Path(sys.executable):
        return PythonEnvironment(
            executable=Path(sys.executable),
            version=f"{sys.version_info.major}.{sys.version_info.minor}",
            libdir=Path(str(sysconfig.get_config_var("LIBDIR"))),
        )
    probe = (
        "import json, sys, sysconfig; print(json.dumps([f'{sys.version_info[0]}."
        "{sys.version_info[1]}', sysconfig.get_config_var('LIBDIR')]))"
    )
    try:
        out = subprocess.run(
            [str(executable), "-c", probe], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise ServiceDependencyMissing(
            SERVICE, ServiceReason.BINARY_MISSING, f"cannot run model Python {executable}: {e}"
        ) from e
    version, libdir = json.loads(out)
    return PythonEnvironment(executable=Path(executable), version=version, libdir=Path(libdir))


def assemble_backends(dist: TritonDistribution, python: PythonEnvironment, run_dir: Path) -> Path:
    """Copy the Python backend and the matching stub into ``run_dir/backends``; return that."""
    stub = dist.stubs / python.version / _STUB
    if not stub.is_file():
        available = sorted(p.name for p in dist.stubs.iterdir())
        raise ServiceDependencyMissing(
            SERVICE,
            ServiceReason.PACKAGE_MISSING,
            f"no Python backend stub for Python {python.version} (have {available})",
        )
    backends = run_dir / "backends"
    target = backends / "python"
    target.mkdir(parents=True, exist_ok=True)
    for name in _PYTHON_BACKEND_FILES:
        shutil.copy2(dist.python_backend / name, target / name)
    shutil.copy2(stub, target / _STUB)
    return backends


def server_environment(
    dist: TritonDistribution, python: PythonEnvironment, base: dict[str, str]
) -> dict[str, str]:
    """Build the environment: bundled libs + libpython on LD_LIBRARY_PATH, model bin on PATH."""
    env = dict(base)
    libs = [str(dist.libs), str(python.libdir)]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    # not resolved: a venv's bin/python3 is a symlink and must stay the venv's
    bin_dir = str(Path(python.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


class TritonServer(LocalService):
    """A local tritonserver on explicit ports; ``start()`` waits for it and its models."""

    def __init__(
        self,
        run_dir: Path,
        model_repository: Path,
        http_port: int = 18000,
        grpc_port: int = 18001,
        metrics_port: int = 18002,
        python_executable: Path | None = None,
        model_config_name: str | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.model_repository = model_repository.resolve()
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.python_executable = python_executable
        self.model_config_name = model_config_name
        self.extra_args = tuple(extra_args)
        self.host = host
        self.http_url = f"{host}:{http_port}"
        self.grpc_url = f"{host}:{grpc_port}"
        self.metrics_url = f"http://{host}:{metrics_port}/metrics"
        self.log_path = self.run_dir / "tritonserver.log"
        self.service = SERVICE
        self.pid_file = PidFile(
            self.run_dir / "triton.pid",
            markers=(
                "tritonserver",
                f"--http-port={http_port}",
                f"--model-repository={self.model_repository}",
            ),
        )
        self._process: subprocess.Popen[bytes] | None = None

    def command(self, dist: TritonDistribution, backends: Path) -> list[str]:
        """Build the tritonserver command line."""
        cmd = [
            str(dist.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
        ]
        if self.model_config_name:
            cmd.append(f"--model-config-name={self.model_config_name}")
        cmd.extend(self.extra_args)
        return cmd

    def start(self, timeout_s: float = 120) -> None:
        """Assemble backends, launch tritonserver and wait for ``/v2/health/ready``."""
        if not self.model_repository.is_dir():
            raise ServiceStartError(
                SERVICE,
                ServiceReason.MODEL_REPOSITORY_MISSING,
                f"{self.model_repository} is not a folder",
            )
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        self._refuse_start(self.host, ports, self.http_url)
        dist = locate_distribution()
        python = describe_python(self.python_executable)
        backends = assemble_backends(dist, python, self.run_dir)
        env = server_environment(dist, python, dict(os.environ))
        self._launch(self.command(dist, backends), self.log_path, timeout_s, env=env)

    def is_healthy(self) -> bool:
        """Tell whether ``/v2/health/ready`` answers 200 (server up and every model ready)."""
        url = f"http://{self.http_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
