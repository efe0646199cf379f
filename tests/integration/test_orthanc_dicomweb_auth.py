"""The DICOMweb poller against a PACS that wants a password over TLS (a real Orthanc).

This Orthanc requires HTTP basic authentication and is reached over HTTPS, with a certificate
signed by a CA made here (the hospital's own CA), through a TLS front (:class:`TlsFront` says
why). The poller, given the user, the password and the CA file (``CTRIAGE_INGEST__DICOMWEB_*``),
fetches a study; without the password it is refused (401), without the CA it does not trust
the server (whatever REQUESTS_CA_BUNDLE says).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from dicom_factory import write_ct_series
from pydantic import SecretStr

from deploy.exceptions import ServiceError
from deploy.orthanc import HOST, OrthancServer, orthanc_binary, render_config
from streams.records import DeadLetter
from streams.sources.dicomweb import DicomwebPoller, pacs_session
from streams.sources.publish import StudyArrival
from streams.sources.study_store import StudyStore

pytestmark = pytest.mark.integration

USER = "ctriage-poller"
PASSWORD = "pacs-password-for-tests-only"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("ctriage test hospital CA"))
        .issuer_name(_name("ctriage test hospital CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    # RSA: the Orthanc 1.10 of Debian crashed on the first TLS handshake with an EC key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(HOST))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = folder / "ca.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_pem = folder / "server.pem"  # Orthanc wants the certificate and its key in one file
    server_pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    server_pem.chmod(0o600)
    return ca_pem, server_pem


class PasswordOrthanc(OrthancServer):
    """Orthanc requiring HTTP basic authentication (the launcher's configuration plus users)."""

    def start(self, timeout_s: float = 60) -> None:
        """Write the configuration with a registered user, launch, wait until it answers."""
        self._refuse_start(HOST, (self.http_port, self.dicom_port), self.url)
        storage = self.run_dir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = render_config(storage, self.http_port, self.dicom_port, self.aet, {})
        config |= {"AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD}}
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        self._launch([orthanc_binary(), str(self.config_path)], self.log_path, timeout_s)

    def is_healthy(self) -> bool:
        """Whether ``/system`` answers the registered user."""
        try:
            url = f"{self.url}/system"
            return requests.get(url, auth=(USER, PASSWORD), timeout=2).status_code == 200
        except requests.RequestException:
            return False


class TlsFront:
    """TLS in front of the PACS, as a hospital's reverse proxy puts it (HTTPS -> Orthanc).

    Debian's Orthanc 1.10.1 serves HTTPS itself only until the first handshake, which crashes it
    here (SIGSEGV, checked with an openssl-made certificate too), so TLS is terminated by this
    byte pipe: every DICOMweb request still reaches the real Orthanc.
    """

    def __init__(self, port: int, backend_port: int, server_pem: Path) -> None:
        self.port = port
        self.backend_port = backend_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(server_pem)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.writers: set[asyncio.StreamWriter] = set()  # open connections, both sides

    def start(self) -> None:
        self.thread.start()
        serve = asyncio.start_server(self._pipe, HOST, self.port, ssl=self.context)
        self.server = asyncio.run_coroutine_threadsafe(serve, self.loop).result(timeout=10)

    def stop(self) -> None:
        # close the pipes still open (a client's keep-alive): a transport left to the garbage
        # collector after the loop is closed warns in a later test
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    async def _close(self) -> None:
        """Every connection ever piped, aborted; then the server.

        A closed TLS side still waits for the peer's goodbye (up to asyncio's 30 s TLS shutdown
        timeout), and a client that gave up after a refusal never sends it: a transport left so
        when the loop closes warns ("unclosed transport") in whichever later test collects it.
        Aborting needs no answer; it is a no-op on a transport already closed.
        """
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await asyncio.sleep(0.1)  # their connection_lost callbacks run; the pipes end
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        back_reader, back_writer = await asyncio.open_connection(HOST, self.backend_port)
        self.writers.add(back_writer)

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, ssl.SSLError):
                pass  # the other side went away: close both
            finally:
                sink.close()

        # either side ending ends the pipe: a half left open would wait for an EOF never sent
        pipes = [asyncio.ensure_future(copy(reader, back_writer)),
                 asyncio.ensure_future(copy(back_reader, writer))]  # fmt: skip
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        writer.close()
        back_writer.close()


@dataclass
class Pacs:
    """The PACS as the poller sees it: an HTTPS DICOMweb root and the hospital's CA."""

    orthanc: PasswordOrthanc
    url: str
    ca_file: Path

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def session(self) -> requests.Session:
        return pacs_session(self.url, None, USER, SecretStr(PASSWORD), self.ca_file)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory, port_offset: int) -> Iterator[Pacs]:
    run_dir = tmp_path_factory.mktemp("orthanc-auth")
    server = PasswordOrthanc(run_dir, 28043 + port_offset, 24243 + port_offset, aet="SECURED")
    try:
        server.start(timeout_s=60)
    except ServiceError as e:
        pytest.fail(f"the password-protected Orthanc did not start: {e}", pytrace=False)
    ca_file, server_pem = make_ca_and_server_cert(run_dir)
    front = TlsFront(28443 + port_offset, server.http_port, server_pem)
    front.start()
    yield Pacs(server, f"https://{HOST}:{front.port}", ca_file)
    front.stop()
    server.stop()


def poller(
    pacs: Pacs, store: Path, session: requests.Session, timeout_s: float = 30
) -> DicomwebPoller:
    rejected: list[DeadLetter] = []
    arrivals: list[StudyArrival] = []
    return DicomwebPoller(
        pacs.dicomweb_url,
        StudyStore(store),
        arrivals.append,
        rejected.append,
        stability_s=0.0,
        session=session,
        timeout_s=timeout_s,
    )


def test_poller_with_password_and_ca_fetches_the_study(pacs: Pacs, tmp_path: Path):
    study_uid = "1.2.826.0.1.3680043.8.498.7007"
    write_ct_series(tmp_path / "series", 6, study_uid=study_uid)
    # sessions closed at the end: a keep-alive connection left to the garbage collector stays
    # open on the TLS front, whose transport then warns "unclosed" in a later test
    with pacs.session() as session, pacs.session() as polling:
        for file in sorted((tmp_path / "series").rglob("*.dcm")):
            url = f"{pacs.url}/instances"
            session.post(url, data=file.read_bytes(), timeout=30).raise_for_status()
        arrivals = poller(pacs, tmp_path / "store", polling).poll_once()
    assert [(a.study_uid, a.instances) for a in arrivals] == [(study_uid, 6)]


def test_poller_without_password_is_refused(pacs: Pacs, tmp_path: Path) -> None:
    with (
        pacs_session(pacs.url, ca_file=pacs.ca_file) as anonymous,
        pytest.raises(requests.HTTPError) as info,
    ):
        poller(pacs, tmp_path / "store", anonymous).poll_once()
    assert info.value.response is not None and info.value.response.status_code == 401


# urllib3(-future) drops the socket of a failed handshake to the garbage collector
@pytest.mark.filterwarnings("ignore:unclosed <ssl.SSLSocket:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_poller_without_the_hospital_ca_does_not_trust_the_pacs(pacs: Pacs, tmp_path: Path) -> None:
    with (
        pacs_session(pacs.url, None, USER, SecretStr(PASSWORD)) as system_cas,
        pytest.raises(requests.exceptions.SSLError),
    ):
        # short: one CI run waited out a 30 s timeout on a handshake before the refusal came
        poller(pacs, tmp_path / "store", system_cas, timeout_s=5).poll_once()


def test_session_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="not both"):
        pacs_session("https://pacs", SecretStr("t"), "user", SecretStr("p"))
    with pytest.raises(ValueError, match="does not exist"):
        pacs_session("https://pacs", ca_file=Path("/nonexistent/ca.pem"))
    bearer = pacs_session("https://pacs", SecretStr("opaque-token"))
    assert bearer.headers["Authorization"] == "Bearer opaque-token"
