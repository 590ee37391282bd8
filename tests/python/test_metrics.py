"""The Prometheus endpoint of `gopro.Server(metrics_listen=...)` and of
`gopro serve --metrics-listen`, parsed with the `prometheus_client`
package's text parser."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import gopro
import pytest
from conftest import GOPRO_BIN, Process, need
from prometheus_client.parser import text_string_to_metric_families


def scrape(addr: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape, by name and sorted labels."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("gopro_"), family.name
        assert family.documentation, family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_after_known_traffic() -> None:
    server = gopro.Server("127.0.0.1:0", metrics_listen="127.0.0.1:0", grace=2.0)

    @server.handler(16)
    def echo(frame: gopro.Frame) -> bytes:
        return frame.body

    @server.handler(17)
    def fails(frame: gopro.Frame) -> bytes:
        raise RuntimeError("on purpose")

    with pytest.raises(RuntimeError):
        _ = server.metrics_addr  # not started
    with server:
        addr = server.metrics_addr
        assert addr is not None and addr.startswith("127.0.0.1:")
        assert int(addr.rsplit(":", 1)[1]) not in (0, server.port)
        with gopro.Client(server.local_addr, timeout=5) as client:
            client.heartbeat()
            client.heartbeat()
            client.heartbeat()
            assert client.request(1, b"a").body == b"Server says: a"
            assert client.request(1, b"b").body == b"Server says: b"
            assert client.request(16, b"ping").body == b"ping"
            with pytest.raises(gopro.ServerError):
                client.request(17, b"")
            m = scrape(addr)
        frames_in = {k[1][0][1]: v for k, v in m.items() if k[0] == "gopro_frames_received_total"}
        assert frames_in == {
            "heartbeat": 3, "message": 2, "login": 0, "error": 0, "goaway": 0,
            "reserved": 0, "application": 2,
        }
        frames_out = {k[1][0][1]: v for k, v in m.items() if k[0] == "gopro_frames_sent_total"}
        assert frames_out == {
            "heartbeat": 3, "message": 2, "login": 0, "error": 1, "goaway": 0,
            "reserved": 0, "application": 1,
        }
        assert m[("gopro_connections_open", ())] == 1
        assert m[("gopro_connections_accepted_total", ())] == 1
        assert m[("gopro_errors_total", (("kind", "handler"),))] == 1
        # 3 x 8 + 2 x 9 + 12 + 8 bytes received.
        assert m[("gopro_received_bytes_total", ())] == 62
        assert m[("gopro_handler_duration_seconds_count", ())] == 2
        assert m[("gopro_handler_duration_seconds_bucket", (("le", "+Inf"),))] == 2
        assert m[("gopro_memory_budget_limit_bytes", ())] == 268435456
        assert m[("gopro_proxy_headers_total", (("result", "ok"),))] == 0
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://{addr}/other", timeout=10)
        assert info.value.code == 404
        info.value.close()
    assert not server.running


def test_no_metrics_by_default() -> None:
    with gopro.Server("127.0.0.1:0") as server:
        assert server.metrics_addr is None


def test_gopro_serve_metrics_listen() -> None:
    server = Process(
        [str(need(GOPRO_BIN)), "serve", "--listen", "127.0.0.1:0", "--metrics-listen",
         "127.0.0.1:0"]
    )
    try:
        deadline = time.monotonic() + 10
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = [line for line in server.lines if "metrics on http://" in line]
            if lines:
                break
            time.sleep(0.02)
        assert lines, server.lines
        url = lines[0].split("metrics on http://", 1)[1].split()[0]
        addr = url.removesuffix("/metrics")
        assert url.endswith("/metrics")
        with gopro.Client(server.addr, timeout=5) as client:
            client.heartbeat()
        m = scrape(addr)
        assert m[("gopro_frames_received_total", (("command", "heartbeat"),))] == 1
        assert m[("gopro_connections_accepted_total", ())] == 1
    finally:
        assert server.stop() == 0


def closed_unanswered(sock: socket.socket) -> float:
    """Reads until the server closes `sock` (10 s at most); asserts nothing
    came; the time it took."""
    started = time.monotonic()
    sock.settimeout(10)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    assert got == b"", got[:200]
    return time.monotonic() - started


def hold_scrapes(addr: str, n: int) -> list[socket.socket]:
    """`n` scrapes under way, each half a request head in."""
    host, port = addr.rsplit(":", 1)
    held = []
    for _ in range(n):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        held.append(sock)
    return held


def test_metrics_limits_at_their_boundary() -> None:
    for bad in ({"metrics_max_scrapers": 0}, {"metrics_header_timeout": 0.0}):
        with pytest.raises(gopro.ConfigError) as info:
            gopro.Server("127.0.0.1:0", **bad)  # type: ignore[arg-type]
        assert info.value.setting == next(iter(bad))
    with pytest.raises(ValueError):
        gopro.Server("127.0.0.1:0", metrics_header_timeout=-1.0)
    server = gopro.Server(
        "127.0.0.1:0", metrics_listen="127.0.0.1:0", metrics_max_scrapers=2,
        metrics_header_timeout=0.5,
    )
    with server:
        addr = server.metrics_addr
        assert addr is not None
        started = time.monotonic()
        held = hold_scrapes(addr, 2)
        # The third is closed at once, unanswered.
        (extra,) = hold_scrapes(addr, 1)
        assert closed_unanswered(extra) < 0.4
        # The two, never finishing their heads, at the header timeout.
        for sock in held:
            closed_unanswered(sock)
        elapsed = time.monotonic() - started
        assert 0.5 <= elapsed < 3, elapsed
        for sock in [*held, extra]:
            sock.close()
        assert scrape(addr)[("gopro_connections_open", ())] == 0


def test_gopro_serve_metrics_limits() -> None:
    server = Process(
        [str(need(GOPRO_BIN)), "serve", "--listen", "127.0.0.1:0", "--metrics-listen",
         "127.0.0.1:0", "--metrics-max-scrapers", "1", "--metrics-header-timeout", "30s"]
    )
    try:
        deadline = time.monotonic() + 10
        lines: list[str] = []
        while time.monotonic() < deadline and not lines:
            lines = [line for line in server.lines if "metrics on http://" in line]
            time.sleep(0.02)
        assert lines, server.lines
        addr = lines[0].split("metrics on http://", 1)[1].split()[0].removesuffix("/metrics")
        (held,) = hold_scrapes(addr, 1)
        (extra,) = hold_scrapes(addr, 1)
        assert closed_unanswered(extra) < 5  # not at the 30 s header timeout
        held.sendall(b"Connection: close\r\n\r\n")
        assert held.recv(13) == b"HTTP/1.1 200 "
        held.close()
        extra.close()
    finally:
        assert server.stop() == 0
