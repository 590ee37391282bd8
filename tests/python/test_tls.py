"""TLS from Python: the clients against `gopro serve` and the Go peer
(crypto/tls), `gopro.Server` against CPython's ssl (OpenSSL) and `gopro
send`, mutual TLS with the client's identity in handlers, and every kind of
bad input refused with its exception while the server serves the others."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Iterator

import gopro
import pytest
from conftest import GO_BIN, GOPRO_BIN, ROOT, Process, need

HEARTBEAT = bytes.fromhex("474f010000000000")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test CA, server, client, expired, wrong-host and other-CA files."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "tls-certs.sh"), str(folder)],
        check=True, capture_output=True, timeout=120,
    )
    return folder


def ca(certs: Path, **kwargs: str) -> gopro.TlsConfig:
    return gopro.TlsConfig(ca_file=certs / "ca.pem", **kwargs)


def identity(certs: Path, name: str = "client") -> gopro.TlsConfig:
    return gopro.TlsConfig(
        certs / "ca.pem", certs / f"{name}.pem", certs / f"{name}.key", server_name="localhost"
    )


@contextlib.contextmanager
def tls_server(
    certs: Path, cert: str = "server", **kwargs: object
) -> Iterator[gopro.Server]:
    """A Python TLS server: 16 echoes, 17 answers the client's common name,
    18 (a coroutine) its URIs, 19 the connection's TLS version."""
    tls = kwargs.pop("tls", None) or gopro.TlsServerConfig(
        certs / f"{cert}.pem", certs / f"{cert}.key"
    )
    server = gopro.Server("127.0.0.1:0", grace=1.0, tls=tls, **kwargs)  # type: ignore[arg-type]

    @server.handler(16)
    def echo(frame: gopro.Frame) -> bytes:
        return frame.body

    @server.handler(17)
    def common_name(frame: gopro.Frame) -> str:
        return gopro.current_connection().client_common_name or "(none)"

    @server.handler(18)
    async def uris(frame: gopro.Frame) -> str:
        await asyncio.sleep(0.001)
        return " ".join(gopro.current_connection().client_uris)

    @server.handler(19)
    def version(frame: gopro.Frame) -> str:
        return gopro.current_connection().tls_version or "plaintext"

    server.start()
    try:
        yield server
    finally:
        server.shutdown()
        assert server.wait(10)


def assert_serves(server: gopro.Server, certs: Path) -> None:
    """A good client is still served."""
    with gopro.Client(server.local_addr, timeout=5, tls=ca(certs, server_name="localhost")) as c:
        assert c.request(16, b"still here").body == b"still here"


@pytest.fixture
def gopro_serve(certs: Path) -> Iterator[Process]:
    server = Process([
        str(need(GOPRO_BIN)), "serve", "--listen", "127.0.0.1:0", "--grace", "1s",
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
    ])
    yield server
    server.stop()


@pytest.fixture
def go_server(certs: Path) -> Iterator[Process]:
    server = Process([
        str(need(GO_BIN / "server")), "-addr", "127.0.0.1:0", "-quiet",
        "-tls-cert", str(certs / "server.pem"), "-tls-key", str(certs / "server.key"),
    ])
    yield server
    server.stop()


def read_frame(sock: socket.socket) -> gopro.Frame:
    """The first frame a socket (plain or ssl) receives."""
    decoder = gopro.Decoder()
    while True:
        chunk = sock.recv(4096)
        assert chunk, "closed before a whole frame"
        decoder.feed(chunk)
        for frame in decoder:
            return frame


def by_name(addr: str) -> str:
    return "localhost:" + addr.rsplit(":", 1)[1]


@pytest.mark.parametrize("peer", ["gopro_serve", "go_server"])
def test_client_by_ip_and_by_name(peer: str, certs: Path, request: pytest.FixtureRequest) -> None:
    server: Process = request.getfixturevalue(peer)
    for addr, tls in [
        (server.addr, ca(certs)),  # the certificate names 127.0.0.1
        (server.addr, ca(certs, server_name="localhost")),
        (by_name(server.addr), ca(certs)),
    ]:
        with gopro.Client(addr, timeout=5, tls=tls) as client:
            assert client.request(gopro.Command.MESSAGE, b"hi").body == b"Server says: hi"
            client.heartbeat()
            replies = client.request_many((1, b"m%d" % i) for i in range(100))
            assert replies[99].body == b"Server says: m99"


@pytest.mark.parametrize("peer", ["gopro_serve", "go_server"])
async def test_async_client_by_ip_and_by_name(
    peer: str, certs: Path, request: pytest.FixtureRequest
) -> None:
    server: Process = request.getfixturevalue(peer)
    for addr, tls in [
        (server.addr, ca(certs)),
        (server.addr, ca(certs, server_name="localhost")),
        (by_name(server.addr), ca(certs)),
    ]:
        async with await gopro.AsyncClient.connect(addr, timeout=5, tls=tls) as client:
            replies = await asyncio.gather(*(client.request(1, b"n%d" % i) for i in range(10)))
            assert [r.body for r in replies] == [b"Server says: n%d" % i for i in range(10)]
            await client.heartbeat()


def test_system_roots(
    gopro_serve: Process, certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tls=True trusts the system's roots, which SSL_CERT_FILE names.
    monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.pem"))
    with gopro.Client(by_name(gopro_serve.addr), timeout=5, tls=True) as client:
        assert client.request(1, b"sys").body == b"Server says: sys"
    monkeypatch.setenv("SSL_CERT_FILE", str(certs / "other-ca.pem"))
    with pytest.raises(gopro.TlsError, match="UnknownIssuer"):
        gopro.Client(by_name(gopro_serve.addr), timeout=5, tls=gopro.TlsConfig())


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_python_server_against_cpython_ssl(certs: Path, version: ssl.TLSVersion) -> None:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.minimum_version = context.maximum_version = version
    with tls_server(certs) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as conn:
                conn.sendall(HEARTBEAT)
                echo = b""
                while len(echo) < 8:
                    chunk = conn.recv(8 - len(echo))
                    assert chunk, "closed before the echo"
                    echo += chunk
                assert echo == HEARTBEAT
                conn.sendall(gopro.encode(19))
                assert read_frame(conn).body.decode() == conn.version()
        stats = server.stats()
        assert stats["tls_handshakes"] == 1
        assert stats["errors"]["tls"] == 0


def test_python_server_against_gopro_send(certs: Path) -> None:
    binary = str(need(GOPRO_BIN))
    with tls_server(certs) as server:
        out = subprocess.run(
            [binary, "send", "--addr", server.local_addr, "--tls-ca", str(certs / "ca.pem"),
             "--command", "16", "over tls"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout == "16 over tls\n"
        out = subprocess.run(
            [binary, "send", "--addr", server.local_addr, "--tls-ca",
             str(certs / "other-ca.pem"), "--command", "16", "x"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode != 0
        assert "UnknownIssuer" in out.stderr


def test_mtls_identity_in_handlers(certs: Path) -> None:
    tls = gopro.TlsServerConfig(
        certs / "server.pem", certs / "server.key", certs / "ca.pem", client_auth="optional"
    )
    with tls_server(certs, tls=tls) as server:
        with gopro.Client(server.local_addr, timeout=5, tls=identity(certs)) as client:
            assert client.request(17).body == b"device-42"  # a plain function
            assert client.request(18).body == b"spiffe://gopro.test/device/42"  # a coroutine
            assert client.request(19).body == b"TLSv1.3"
        # Optional: a client without a certificate is served, and seen so.
        with gopro.Client(server.local_addr, timeout=5, tls=ca(certs)) as client:
            assert client.request(17).body == b"(none)"


def test_authenticator_reads_the_client_certificate(certs: Path) -> None:
    tls = gopro.TlsServerConfig(
        certs / "server.pem", certs / "server.key", certs / "ca.pem", client_auth="optional"
    )
    server = gopro.Server("127.0.0.1:0", grace=1.0, tls=tls)
    seen: list[gopro.ConnectionInfo] = []

    @server.authenticator
    def login(credentials: bytes) -> bool:
        info = gopro.current_connection()
        seen.append(info)
        return info.client_common_name == credentials.decode()

    @server.handler(16)
    async def who(frame: gopro.Frame) -> str:
        info = gopro.current_connection()
        return f"{info.client_subject}|{','.join(info.client_dns_names)}|{info.server_name}"

    with server:
        with gopro.Client(server.local_addr, timeout=5, tls=identity(certs)) as client:
            client.login(b"device-42")
            body = client.request(16).body.decode()
            subject, dns, sni = body.split("|")
            assert "CN=device-42" in subject
            assert dns == "device-42.example"
            assert sni == "localhost"
        with gopro.Client(server.local_addr, timeout=5, tls=ca(certs)) as client:
            with pytest.raises(gopro.ServerError):
                client.login(b"device-42")
    first, second = seen
    assert first.tls and first.client_common_name == "device-42"
    assert first.client_emails and first.client_uris == ("spiffe://gopro.test/device/42",)
    assert first.peer.startswith("127.0.0.1:") and first.local == server.local_addr
    assert second.client_common_name is None and second.client_subject is None
    assert second.client_dns_names == ()
    assert "device-42" in repr(first)


def test_current_connection_in_plaintext_and_outside_handlers() -> None:
    server = gopro.Server("127.0.0.1:0", grace=1.0)

    @server.handler(16)
    def peer(frame: gopro.Frame) -> str:
        info = gopro.current_connection()
        assert not info.tls and info.tls_version is None and info.client_subject is None
        return info.peer

    with server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(gopro.encode(16))
            host, port = sock.getsockname()[:2]
            assert read_frame(sock).body.decode() == f"{host}:{port}"
    with pytest.raises(RuntimeError, match="handler"):
        gopro.current_connection()


def test_bad_peers_fail_and_the_server_serves_the_others(certs: Path) -> None:
    with tls_server(certs) as server:
        addr = server.local_addr
        # A server certificate from a CA the client does not trust.
        with pytest.raises(gopro.TlsError, match="UnknownIssuer") as info:
            gopro.Client(addr, timeout=5, tls=gopro.TlsConfig(certs / "other-ca.pem"))
        assert isinstance(info.value, gopro.ConnectError) and "UnknownIssuer" in info.value.reason
        assert_serves(server, certs)
        # A name the certificate does not carry.
        with pytest.raises(gopro.TlsError, match="not valid for name"):
            gopro.Client(addr, timeout=5, tls=ca(certs, server_name="example.invalid"))
        assert_serves(server, certs)
        # A plaintext GoPro client is told, in plaintext, then closed.
        with gopro.Client(addr, timeout=5) as plain:
            with pytest.raises(gopro.ServerError, match="this port requires TLS"):
                plain.heartbeat()
            with pytest.raises(gopro.ConnectionClosed):
                plain.heartbeat()
        assert_serves(server, certs)
        time.sleep(0.1)  # the server counts a refused handshake after the client has seen it
        assert server.stats()["errors"]["tls"] >= 3
        assert server.stats()["tls_handshakes"] >= 3


def test_expired_and_wrong_host_certificates(certs: Path) -> None:
    with tls_server(certs, cert="expired") as server:
        with pytest.raises(gopro.TlsError, match="expired"):
            gopro.Client(server.local_addr, timeout=5, tls=ca(certs))
    with tls_server(certs, cert="wrong-host") as server:
        with pytest.raises(gopro.TlsError, match="not valid for name"):
            gopro.Client(server.local_addr, timeout=5, tls=ca(certs))
        with gopro.Client(
            server.local_addr, timeout=5, tls=ca(certs, server_name="example.invalid")
        ) as client:
            assert client.request(16, b"ok").body == b"ok"


async def test_async_client_refused(certs: Path) -> None:
    with tls_server(certs) as server:
        with pytest.raises(gopro.TlsError, match="UnknownIssuer"):
            await gopro.AsyncClient.connect(
                server.local_addr, timeout=5, tls=gopro.TlsConfig(certs / "other-ca.pem")
            )


def test_mtls_required_refuses_a_client_without_certificate(certs: Path) -> None:
    tls = gopro.TlsServerConfig(certs / "server.pem", certs / "server.key", certs / "ca.pem")
    with tls_server(certs, tls=tls) as server:
        # TLS 1.3: the client's side of the handshake is over before the
        # server checks the client's certificate, so the refusal (an alert,
        # then the close) comes to the first call, and to every later one.
        for refused in [ca(certs), identity(certs, "other-client")]:
            with gopro.Client(server.local_addr, timeout=5, tls=refused) as client:
                with pytest.raises(gopro.TlsError):
                    client.request(16, b"x")
                with pytest.raises(gopro.TlsError):
                    client.heartbeat()
        with gopro.Client(server.local_addr, timeout=5, tls=identity(certs)) as client:
            assert client.request(17).body == b"device-42"
        assert server.stats()["errors"]["tls"] >= 2


def test_tls_client_on_a_plaintext_port(certs: Path) -> None:
    server = gopro.Server("127.0.0.1:0", grace=1.0)
    with server:
        with pytest.raises(gopro.TlsError):
            gopro.Client(server.local_addr, timeout=5, tls=ca(certs))
        with gopro.Client(server.local_addr, timeout=5) as client:
            client.heartbeat()


async def test_ssl_context_is_refused_with_the_class_to_use(certs: Path) -> None:
    context = ssl.create_default_context()
    with pytest.raises(TypeError, match=r"gopro\.TlsConfig.*ssl\.SSLContext"):
        gopro.Client("127.0.0.1:1", tls=context)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"gopro\.TlsConfig"):
        await gopro.AsyncClient.connect("127.0.0.1:1", tls=context)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"gopro\.TlsServerConfig.*ssl\.SSLContext"):
        gopro.Server("127.0.0.1:0", tls=context)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="client's"):
        gopro.Server("127.0.0.1:0", tls=ca(certs))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"gopro\.TlsConfig"):
        gopro.Client("127.0.0.1:1", tls="ca.pem")  # type: ignore[arg-type]


def test_bad_files_raise_tls_config_error_naming_the_file(certs: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    for make in [
        lambda: gopro.TlsConfig(ca_file=missing),
        lambda: gopro.TlsConfig(ca_file=garbage),
        lambda: gopro.TlsConfig(ca_file=empty),
        lambda: gopro.TlsConfig(certs / "ca.pem", garbage, certs / "client.key"),
        lambda: gopro.TlsConfig(certs / "ca.pem", certs / "client.pem", missing),
        lambda: gopro.TlsServerConfig(missing, certs / "server.key"),
        lambda: gopro.TlsServerConfig(certs / "server.pem", garbage),
        lambda: gopro.TlsServerConfig(certs / "server.pem", certs / "server.key", empty),
    ]:
        with pytest.raises(gopro.TlsConfigError) as info:
            make()
        assert str(info.value).count(str(tmp_path)) == 1, info.value
        assert isinstance(info.value, gopro.ConfigError) and info.value.setting == "tls"
    # What is wrong without a file to blame.
    with pytest.raises(gopro.TlsConfigError, match="does not fit"):
        gopro.TlsServerConfig(certs / "server.pem", certs / "client.key")
    with pytest.raises(gopro.TlsConfigError, match="go together"):
        gopro.TlsConfig(certs / "ca.pem", cert_file=certs / "client.pem")
    with pytest.raises(gopro.TlsConfigError, match="server name"):
        gopro.TlsConfig(certs / "ca.pem", server_name="not a name!")
    with pytest.raises(gopro.TlsConfigError, match="client_auth"):
        gopro.TlsServerConfig(
            certs / "server.pem", certs / "server.key", client_auth="sometimes"  # type: ignore[arg-type]
        )
    config = gopro.TlsServerConfig(
        str(certs / "server.pem"), certs / "server.key", certs / "ca.pem", client_auth="optional"
    )
    assert (config.cert_file, config.client_auth) == (str(certs / "server.pem"), "optional")
    assert "client_auth='optional'" in repr(config)
    assert ca(certs).ca_file == str(certs / "ca.pem") and ca(certs).server_name is None


def test_tls_handshake_timeout(certs: Path) -> None:
    for bad in [0, 0.0]:
        with pytest.raises(gopro.ConfigError) as info:
            gopro.Server("127.0.0.1:0", tls_handshake_timeout=bad)
        assert info.value.setting == "tls_handshake_timeout"
        assert not isinstance(info.value, gopro.TlsConfigError)
    with pytest.raises(ValueError):
        gopro.Server("127.0.0.1:0", tls_handshake_timeout=-1)
    with tls_server(certs, tls_handshake_timeout=0.3) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
            start = time.monotonic()
            assert silent.recv(1) == b""  # closed by the server
            assert 0.2 < time.monotonic() - start < 3
        assert_serves(server, certs)
        assert server.stats()["errors"]["tls"] == 1


def test_reload_tls(certs: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "cert.key"
    shutil.copy(certs / "server.pem", cert)
    shutil.copy(certs / "server.key", key)
    tls = gopro.TlsServerConfig(cert, key)
    with tls_server(certs, tls=tls) as server:
        cert.write_text("garbage")
        with pytest.raises(gopro.TlsConfigError, match="cert.pem"):
            server.reload_tls()
        assert_serves(server, certs)  # the old certificate stays
        shutil.copy(certs / "wrong-host.pem", cert)
        shutil.copy(certs / "wrong-host.key", key)
        server.reload_tls()
        with pytest.raises(gopro.TlsError, match="not valid for name"):
            gopro.Client(server.local_addr, timeout=5, tls=ca(certs, server_name="localhost"))
        with gopro.Client(
            server.local_addr, timeout=5, tls=ca(certs, server_name="example.invalid")
        ) as client:
            assert client.request(16, b"new").body == b"new"
    with pytest.raises(RuntimeError, match="no TLS"):
        gopro.Server("127.0.0.1:0").reload_tls()


@pytest.mark.parametrize("peer", ["gopro_serve", "go_server"])
async def test_async_large_batches_over_tls(
    peer: str, certs: Path, request: pytest.FixtureRequest
) -> None:
    """Megabytes each way in one batch: rustls takes the requests as the
    socket drains (never all at once), and every decrypted reply is handed
    out, the last small ones after a large one included."""
    server: Process = request.getfixturevalue(peer)
    bodies = [bytes([65 + i % 26]) * (200_000 if i % 3 == 0 else 5) for i in range(60)]
    async with await gopro.AsyncClient.connect(server.addr, timeout=20, tls=ca(certs)) as client:
        replies = await client.request_many([(1, b) for b in bodies])
        assert [r.body for r in replies] == [b"Server says: " + b for b in bodies]
        tail = await asyncio.gather(client.request(1, b"x" * 300_000), client.request(1, b"end"))
        assert [r.body for r in tail] == [b"Server says: " + b"x" * 300_000, b"Server says: end"]
