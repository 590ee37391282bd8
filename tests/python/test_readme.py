"""The Python examples of README.md, run as written (with the test
servers' addresses in place of 127.0.0.1:8888)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import gopro
import pytest
from conftest import ROOT, Process

README = ROOT / "README.md"
DEFAULT = "127.0.0.1:8888"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def find(word: str) -> str:
    found = [b for b in blocks() if word in b]
    assert len(found) == 1, word
    return found[0]


def run(code: str, addr: str, capsys: pytest.CaptureFixture[str]) -> str:
    exec(compile(code.replace(DEFAULT, addr), str(README), "exec"), {"__name__": "__readme__"})
    return capsys.readouterr().out


def test_all_examples_are_tested() -> None:
    assert len(blocks()) == 5


def test_frames_example(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(find("gopro.Decoder("), DEFAULT, capsys)
    assert "Frame(Command.MESSAGE, b'Hello TCP World!')" in out
    assert "refused:" in out


def test_sync_client_example(rust_server: Process, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(find("client.heartbeat()"), rust_server.addr, capsys)
    assert "MESSAGE b'Server says: Hello TCP World!'" in out
    assert "server said: unknown command: 42" in out


def test_async_client_example(rust_server: Process, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(find("AsyncClient.connect"), rust_server.addr, capsys)
    assert "b'Server says: hi'" in out


def test_tls_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The example's files, made as its last sentence says, in its folder.
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "tls-certs.sh"), str(tmp_path)],
        check=True, capture_output=True, timeout=120,
    )
    monkeypatch.chdir(tmp_path)
    out = run(find("gopro.TlsServerConfig("), "127.0.0.1:0", capsys)
    assert "b'device-42 over TLSv1.3'" in out
    assert "refused: invalid peer certificate: UnknownIssuer" in out


def test_server_example(tmp_path: Path) -> None:
    script = tmp_path / "server_example.py"
    code = find("serve_forever()")
    script.write_text(
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        + code.replace(DEFAULT, "127.0.0.1:0").replace(
            "server.serve_forever()",
            "server.start()\nlogging.info('listening on %s', server.local_addr)\n"
            "try:\n    server.serve_forever()\nexcept KeyboardInterrupt:\n    sys.exit(0)",
        )
    )
    server = Process([sys.executable, str(script)])
    try:
        with gopro.Client(server.addr, timeout=5) as client:
            with pytest.raises(gopro.ServerError, match="not authenticated"):
                client.request(16, b"x")
            with pytest.raises(gopro.ServerError):
                client.login(b"user:wrong")
            client.login(b"user:secret")
            assert client.request(16, b"abc").body == b"ABC"
            assert client.request(17, b"abc") == gopro.Frame(18, b"abc")
            assert client.request(1, b"hi").body == b"Python says: hi"
            with pytest.raises(gopro.ServerError) as info:
                client.request(1, b"")
            assert info.value.reason == "empty message"
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(15) == 0
    finally:
        server.stop()
    assert any("ValueError: empty message" in line for line in server.lines)
