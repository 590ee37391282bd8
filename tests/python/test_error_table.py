"""The README's error table against the exceptions the module raises: one
core error of every kind is put through the module's one mapping."""

import builtins
from pathlib import Path

import gopro
from gopro import _gopro

README = Path(__file__).resolve().parents[2] / "README.md"


def table() -> list[tuple[str, str]]:
    """(Rust name, Python name) of each row between the errors markers."""
    text = README.read_text()
    start = text.index("<!-- errors -->")
    end = text.index("<!-- /errors -->")
    rows = []
    for line in text[start:end].splitlines():
        if line.startswith("| `"):
            cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
            rows.append((cells[0], cells[2]))
    return rows


def test_every_core_error_raises_the_exception_of_the_table() -> None:
    samples = _gopro._error_samples()
    rows = table()
    assert [rust for rust, _ in samples] == [rust for rust, _ in rows]
    assert len(rows) >= 20
    for (rust, exc), (_, python) in zip(samples, rows):
        cls = getattr(gopro, python, None) or getattr(builtins, python)
        assert isinstance(cls, type), rust
        if python == "FrameError":
            # The subclass of what is wrong with the frame.
            assert isinstance(exc, cls) and type(exc) is not cls, rust
        else:
            assert type(exc) is cls, f"{rust}: {type(exc).__name__}, table says {python}"
        assert str(exc), rust
        if python != "OSError":
            assert isinstance(exc, gopro.GoproError), rust


def test_exceptions_carry_what_the_core_error_says() -> None:
    by_name = dict(_gopro._error_samples())
    reply = by_name["ClientError::UnexpectedReply"]
    assert isinstance(reply, gopro.UnexpectedReply)
    assert reply.request == gopro.Command.HEARTBEAT
    assert reply.reply == gopro.Frame(gopro.Command.MESSAGE, b"no")
    nothing = by_name["ClientError::NothingInFlight"]
    assert isinstance(nothing, gopro.NothingInFlight)
    assert (nothing.wanted, nothing.in_flight) == (1, 0)
    config = by_name["ServerError::Config"]
    assert isinstance(config, gopro.ConfigError)
    assert config.setting == "timeout"
    protocol = by_name["ClientError::Protocol"]
    assert isinstance(protocol, gopro.ProtocolError)
    assert protocol.kind == "bad_magic"
    goaway = by_name["ClientError::GoAway"]
    assert isinstance(goaway, gopro.GoAway)
    assert (goaway.reason, goaway.unanswered) == ("shutting down", 3)
