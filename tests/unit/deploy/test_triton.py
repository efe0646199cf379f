"""Triton launcher pieces that need no server: backend folder, environment, command line."""

from __future__ import annotations

import os
import stat
import sys
import sysconfig
from pathlib import Path

import pytest

from deploy import triton
from deploy.exceptions import ServiceDependencyMissing, ServiceReason, ServiceStartError
from deploy.triton import (
    PythonEnvironment,
    TritonDistribution,
    TritonServer,
    assemble_backends,
    describe_python,
    locate_distribution,
    server_environment,
)

pytestmark = pytest.mark.unit

RUNNING_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def fake_distribution(root: Path, stub_versions: tuple[str, ...]) -> TritonDistribution:
    dist = TritonDistribution(
        binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stubs=root / "python_backend_stubs",
        libs=root / "libs",
    )
    dist.python_backend.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (dist.python_backend / name).write_text(name, encoding="utf-8")
    (dist.python_backend / "__pycache__").mkdir()
    for version in stub_versions:
        stub = dist.stubs / version / "triton_python_backend_stub"
        stub.parent.mkdir(parents=True)
        stub.write_text(f"stub {version}", encoding="utf-8")
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return dist


def test_the_installed_wheel_has_every_piece() -> None:
    dist = locate_distribution()
    assert os.access(dist.binary, os.X_OK)
    assert (dist.python_backend / "libtriton_python.so").is_file()
    assert (dist.stubs / RUNNING_VERSION / "triton_python_backend_stub").is_file()
    assert dist.libs.name == "nvidia_pytriton.libs"


def test_missing_wheel_raises_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triton.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ServiceDependencyMissing) as raised:
        locate_distribution()
    assert raised.value.reason is ServiceReason.PACKAGE_MISSING
    assert "pip install nvidia-pytriton" in str(raised.value)


def test_backend_folder_gets_the_stub_of_the_model_python(tmp_path: Path) -> None:
    dist = fake_distribution(tmp_path / "dist", ("3.10", "3.11", "3.12"))
    python = PythonEnvironment(Path("/venv/bin/python"), "3.11", Path("/py/lib"))
    backends = assemble_backends(dist, python, tmp_path / "run")
    files = sorted(p.name for p in (backends / "python").iterdir())
    assert files == [
        "libtriton_python.so",
        "triton_python_backend_stub",
        "triton_python_backend_utils.py",
    ]
    stub = backends / "python" / "triton_python_backend_stub"
    assert stub.read_text(encoding="utf-8") == "stub 3.11"
    assert os.access(stub, os.X_OK)


def test_a_python_without_a_stub_is_refused(tmp_path: Path) -> None:
    dist = fake_distribution(tmp_path / "dist", ("3.10", "3.12"))
    python = PythonEnvironment(Path("/venv/bin/python"), "3.11", Path("/py/lib"))
    with pytest.raises(ServiceDependencyMissing, match="no Python backend stub for Python 3.11"):
        assemble_backends(dist, python, tmp_path / "run")


def test_environment_puts_libs_and_the_model_bin_first(tmp_path: Path) -> None:
    dist = fake_distribution(tmp_path / "dist", ())
    python = PythonEnvironment(Path("/venv/bin/python"), "3.11", Path("/py/lib"))
    env = server_environment(dist, python, {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"})
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [str(dist.libs), "/py/lib", "/opt/lib"]
    assert env["PATH"].split(os.pathsep) == ["/venv/bin", "/usr/bin"]


def test_running_python_is_described_without_resolving_the_venv_link() -> None:
    python = describe_python()
    assert python.executable == Path(sys.executable)
    assert python.version == RUNNING_VERSION
    assert python.libdir == Path(str(sysconfig.get_config_var("LIBDIR")))


def test_another_python_is_probed(tmp_path: Path) -> None:
    link = tmp_path / "bin" / "python3"
    link.parent.mkdir()
    link.symlink_to(sys.executable)
    python = describe_python(link)
    assert python.executable == link
    assert python.version == RUNNING_VERSION


def test_command_line_carries_ports_config_name_and_extra_args(tmp_path: Path) -> None:
    server = TritonServer(
        tmp_path / "run",
        tmp_path / "models",
        http_port=1,
        grpc_port=2,
        metrics_port=3,
        model_config_name="h100",
        extra_args=("--model-control-mode=explicit", "--load-model=*"),
    )
    dist = fake_distribution(tmp_path / "dist", ())
    cmd = server.command(dist, tmp_path / "run" / "backends")
    assert cmd[0] == str(dist.binary)
    for arg in (
        f"--model-repository={(tmp_path / 'models').resolve()}",
        f"--backend-directory={tmp_path / 'run' / 'backends'}",
        "--http-port=1",
        "--grpc-port=2",
        "--metrics-port=3",
        "--model-config-name=h100",
        "--model-control-mode=explicit",
        "--load-model=*",
    ):
        assert arg in cmd
    assert server.http_url == "127.0.0.1:1"
    assert all(marker in " ".join(cmd) for marker in server.pid_file.markers)


def test_missing_model_repository_is_refused(tmp_path: Path) -> None:
    server = TritonServer(tmp_path / "run", tmp_path / "absent")
    with pytest.raises(ServiceStartError) as raised:
        server.start()
    assert raised.value.reason is ServiceReason.MODEL_REPOSITORY_MISSING


def test_nothing_listening_is_not_healthy(tmp_path: Path) -> None:
    server = TritonServer(tmp_path / "run", tmp_path, http_port=1)
    assert not server.is_healthy()
    server.stop()
    assert server.pid is None
