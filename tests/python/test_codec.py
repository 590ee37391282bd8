"""The codec: shared conformance vectors, Frame, encode/decode, Decoder."""

from __future__ import annotations

import pickle
import random
import sys
from pathlib import Path

import gopro
import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "frames.txt"
ERRORS = {
    "bad_magic": gopro.BadMagic,
    "body_too_large": gopro.BodyTooLarge,
    "unsupported_version": gopro.UnsupportedVersion,
}


def load_vectors() -> list[tuple[str, dict[str, int], bytes, list[str]]]:
    cases = []
    for line in VECTORS.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, options, data, *expect = line.split(" ")
        opts = {}
        if options != "-":
            for item in options.split(","):
                key, value = item.split("=")
                opts[key] = int(value)
        cases.append((name, opts, b"" if data == "-" else bytes.fromhex(data), expect))
    return cases


CASES = load_vectors()


def decoder_for(opts: dict[str, int]) -> gopro.Decoder:
    return gopro.Decoder(opts.get("max_body", gopro.DEFAULT_MAX_BODY), version=opts.get("version"))


def expected_frames(expect: list[str]) -> list[gopro.Frame]:
    frames = []
    for item in expect[:-1]:
        _, version, command, body = item.split(":")
        frames.append(
            gopro.Frame(int(command), b"" if body == "-" else bytes.fromhex(body), int(version))
        )
    return frames


def run(decoder: gopro.Decoder, chunks: list[bytes]) -> tuple[list[gopro.Frame], Exception | None]:
    frames: list[gopro.Frame] = []
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            frames.extend(decoder)
    except gopro.FrameError as e:
        return frames, e
    return frames, None


def check(expect: list[str], frames: list[gopro.Frame], error: Exception | None, decoder: gopro.Decoder) -> None:
    assert frames == expected_frames(expect)
    outcome = expect[-1]
    if outcome.startswith("error:"):
        kind = outcome.split(":", 1)[1]
        assert isinstance(error, ERRORS[kind]), error
        assert isinstance(error, ValueError)
        assert error.kind == kind  # type: ignore[attr-defined]
        return
    assert error is None
    if outcome == "end":
        assert decoder.eof() == []
    else:
        assert outcome == "partial"
        with pytest.raises(gopro.UnexpectedEof) as info:
            decoder.eof()
        assert info.value.kind == "unexpected_eof"


@pytest.mark.parametrize("name,opts,data,expect", CASES, ids=[c[0] for c in CASES])
def test_vector_whole(name: str, opts: dict[str, int], data: bytes, expect: list[str]) -> None:
    decoder = decoder_for(opts)
    frames, error = run(decoder, [data])
    check(expect, frames, error, decoder)


@pytest.mark.parametrize("name,opts,data,expect", CASES, ids=[c[0] for c in CASES])
def test_vector_byte_by_byte(name: str, opts: dict[str, int], data: bytes, expect: list[str]) -> None:
    decoder = decoder_for(opts)
    frames, error = run(decoder, [data[i : i + 1] for i in range(len(data))])
    check(expect, frames, error, decoder)


@pytest.mark.parametrize("name,opts,data,expect", CASES, ids=[c[0] for c in CASES])
def test_vector_decode_one(name: str, opts: dict[str, int], data: bytes, expect: list[str]) -> None:
    frames = expected_frames(expect)
    kwargs = {"max_body": opts.get("max_body", gopro.DEFAULT_MAX_BODY), "version": opts.get("version")}
    if len(frames) == 1 and expect[-1] == "end":
        assert gopro.decode(data, **kwargs) == frames[0]
        assert gopro.decode(bytearray(data), **kwargs) == frames[0]
        assert gopro.decode(memoryview(data), **kwargs) == frames[0]
        # Encoding gives the same bytes back.
        assert bytes(frames[0]) == data
        if frames[0].version == 1:
            assert gopro.encode(frames[0].command, frames[0].body) == data
    else:
        with pytest.raises(gopro.FrameError):
            gopro.decode(data, **kwargs)


def test_vectors_are_there() -> None:
    assert len(CASES) >= 40


def test_command_enum() -> None:
    assert issubclass(gopro.Command, int)
    assert [c.name for c in gopro.Command] == ["HEARTBEAT", "MESSAGE", "LOGIN", "ERROR", "GOAWAY"]
    assert gopro.Command.GOAWAY == 4
    assert gopro.Frame(1).command is gopro.Command.MESSAGE
    assert gopro.Frame(200).command == 200
    assert type(gopro.Frame(200).command) is int


def test_frame_api() -> None:
    f = gopro.Frame(gopro.Command.MESSAGE, b"Hello TCP World!")
    assert (f.command, f.body, f.version) == (gopro.Command.MESSAGE, b"Hello TCP World!", 1)
    assert bytes(f) == bytes.fromhex("474f010100000010") + b"Hello TCP World!"
    assert repr(f) == "Frame(Command.MESSAGE, b'Hello TCP World!')"
    assert repr(gopro.Frame(42, b"x", version=2)) == "Frame(42, b'x', version=2)"
    assert f == gopro.Frame(1, bytearray(b"Hello TCP World!"))
    assert f != gopro.Frame(1, b"other")
    assert f != gopro.Frame(1, b"Hello TCP World!", version=2)
    assert f != "not a frame"
    assert hash(f) == hash(gopro.Frame(1, memoryview(b"Hello TCP World!")))
    assert len({f, gopro.Frame(1, b"Hello TCP World!")}) == 1
    assert gopro.Frame(0).body == b""
    assert pickle.loads(pickle.dumps(f)) == f
    with pytest.raises(AttributeError):
        f.body = b"x"  # type: ignore[misc]


@pytest.mark.parametrize("bad", [-1, 256, 1 << 70, "1", 1.0, None])
def test_bad_commands(bad: object) -> None:
    with pytest.raises(ValueError):
        gopro.encode(bad, b"")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        gopro.Frame(bad)  # type: ignore[arg-type]


def test_commands_as_ints() -> None:
    for code in (0, 1, 15, 16, 255):
        assert gopro.decode(gopro.encode(code, b"x")).command == code
    assert gopro.encode(True, b"") == gopro.encode(1, b"")


@pytest.mark.parametrize("body", [b"abc", bytearray(b"abc"), memoryview(b"xabcx")[1:4]])
def test_bodies_bytes_like(body: bytes) -> None:
    assert gopro.encode(1, body) == bytes.fromhex("4f".join(["47", "0101000000036162 63".replace(" ", "")]))
    assert gopro.Frame(1, body).body == b"abc"


def test_body_not_bytes_like() -> None:
    with pytest.raises(TypeError):
        gopro.encode(1, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        gopro.Frame(1, 42)  # type: ignore[arg-type]


def test_encode_limit() -> None:
    assert len(gopro.encode(1, bytes(gopro.DEFAULT_MAX_BODY))) == gopro.DEFAULT_MAX_BODY + 8
    with pytest.raises(gopro.BodyTooLarge):
        gopro.encode(1, bytes(gopro.DEFAULT_MAX_BODY + 1))
    with pytest.raises(gopro.BodyTooLarge):
        gopro.encode(1, b"12345", max_body=4)


def test_decode_exactly_one_frame() -> None:
    wire = gopro.encode(1, b"hi")
    with pytest.raises(gopro.FrameError) as info:
        gopro.decode(wire + b"G")
    assert info.value.kind == "trailing_bytes"
    with pytest.raises(gopro.UnexpectedEof):
        gopro.decode(wire[:-1])
    with pytest.raises(gopro.UnexpectedEof):
        gopro.decode(b"")
    with pytest.raises(gopro.UnexpectedEof):
        gopro.decode(b"GO")
    with pytest.raises(gopro.BadMagic):
        gopro.decode(b"HTTP/1.1")
    with pytest.raises(gopro.UnsupportedVersion):
        gopro.decode(bytes(gopro.Frame(1, b"", version=2)), version=1)
    assert gopro.decode(bytes(gopro.Frame(1, b"", version=2))).version == 2


def test_decoder_stream() -> None:
    frames = [gopro.Frame(c % 256, bytes([c % 256]) * (c % 50)) for c in range(300)]
    wire = b"".join(bytes(f) for f in frames)
    decoder = gopro.Decoder()
    got: list[gopro.Frame] = []
    for i in range(0, len(wire), 7):
        decoder.feed(wire[i : i + 7])
        got.extend(decoder)
    assert got == frames
    assert decoder.buffered == 0
    decoder.feed(wire[:5])
    assert decoder.buffered == 5
    assert list(decoder) == []
    assert "Decoder(" in repr(decoder)
    assert decoder.max_body == gopro.DEFAULT_MAX_BODY


def test_decoder_any_chunking() -> None:
    """Chunks of every kind and size, drained or not between feeds."""
    rng = random.Random(7)
    frames = [gopro.Frame(rng.randrange(256), rng.randbytes(rng.choice([0, 1, 7, 32, 300, 5000]))) for _ in range(400)]
    wire = b"".join(bytes(f) for f in frames)
    for trial in range(30):
        decoder = gopro.Decoder()
        got: list[gopro.Frame] = []
        at = 0
        while at < len(wire):
            size = rng.choice([1, 2, 8, 9, 100, 4096, 70000])
            chunk = wire[at : at + size]
            at += len(chunk)
            kind = rng.randrange(3)
            decoder.feed(chunk if kind == 0 else bytearray(chunk) if kind == 1 else memoryview(chunk))
            if rng.random() < 0.5:  # leave frames buffered across feeds
                got.extend(decoder.frames() if trial % 2 else list(decoder))
            assert decoder.buffered == at - sum(8 + len(f.body) for f in got)
        got.extend(decoder)
        assert decoder.eof() == []
        assert got == frames
        assert decoder.buffered == 0


def test_decoded_bodies_outlive_the_stream() -> None:
    wire = b"".join(gopro.encode(1, bytes([i]) * i) for i in range(50))
    decoder = gopro.Decoder()
    decoder.feed(bytearray(wire))
    frames = decoder.frames()
    del decoder, wire
    assert [f.body for f in frames] == [bytes([i]) * i for i in range(50)]
    assert frames[3].body is not frames[3].body  # sliced at each read
    assert hash(frames[5]) == hash(gopro.Frame(1, b"\x05" * 5))


def test_decoded_frames_read_their_header_in_the_chunk() -> None:
    decoder = gopro.Decoder()
    decoder.feed(bytes(gopro.Frame(200, b"ab", version=3)) + gopro.encode(3, b"why"))
    odd, error = decoder.frames()
    assert (odd.command, odd.version, odd.body) == (200, 3, b"ab")
    assert (error.command, error.version, error.body) == (gopro.Command.ERROR, 1, b"why")
    assert odd == gopro.Frame(200, b"ab", version=3) and odd != error
    assert repr(odd) == "Frame(200, b'ab', version=3)"
    assert bytes(error) == gopro.encode(3, b"why")
    assert pickle.loads(pickle.dumps(odd)) == odd


def test_decoded_frames_are_small_and_free_their_bodies() -> None:
    chunk = gopro.encode(1, b"x" * 32) * 3 + bytes(gopro.Frame(7, b"", version=3))[:5]
    alone = sys.getrefcount(chunk)
    decoder = gopro.Decoder()
    decoder.feed(chunk)
    frames = decoder.frames()
    # A million decoded frames must not cost a hundred bytes each: a frame
    # is two words, pointing into the chunk it was decoded from.
    assert sys.getsizeof(frames[0]) <= 48
    assert sys.getrefcount(chunk) == alone + 3
    body = frames[1].body
    assert sys.getrefcount(body) == 2  # `body` and the call: not kept
    del decoder  # it kept only the cut frame's 5 bytes
    assert sys.getrefcount(chunk) == alone + 3
    del frames
    assert sys.getrefcount(chunk) == alone


def test_decoded_large_bodies_have_their_own_bytes() -> None:
    small, large = b"s" * 1024, b"L" * 1025
    chunk = gopro.encode(1, small) + gopro.encode(1, large) + gopro.encode(0, small)
    alone = sys.getrefcount(chunk)
    decoder = gopro.Decoder()
    decoder.feed(chunk)
    frames = list(decoder)
    assert [f.body for f in frames] == [small, large, small]
    assert frames[1].body is frames[1].body  # its own, made when decoded
    assert frames[0].body is not frames[0].body  # sliced from the chunk
    assert sys.getrefcount(chunk) == alone + 2  # the two small frames only
    del frames[0], frames[-1]
    assert sys.getrefcount(chunk) == alone


def test_decoder_frames_stops_at_an_error() -> None:
    decoder = gopro.Decoder(max_body=4)
    decoder.feed(gopro.encode(0, b"ok") + gopro.encode(1, b"12345", max_body=5))
    with pytest.raises(gopro.BodyTooLarge):
        decoder.frames()
    assert decoder.buffered == 0


def test_decoder_limit_and_recovery() -> None:
    decoder = gopro.Decoder(max_body=4)
    decoder.feed(gopro.encode(1, b"12345", max_body=5))
    with pytest.raises(gopro.BodyTooLarge):
        next(decoder)
    # The stream is dropped after an error; a new stream decodes.
    decoder.feed(gopro.encode(1, b"1234"))
    assert next(decoder) == gopro.Frame(1, b"1234")


def test_exception_hierarchy() -> None:
    for cls in (gopro.BodyTooLarge, gopro.BadMagic, gopro.UnsupportedVersion, gopro.UnexpectedEof):
        assert issubclass(cls, gopro.FrameError)
        assert issubclass(cls, ValueError)
    for cls in (gopro.ServerError, gopro.GoAway, gopro.ConnectionClosed, gopro.Timeout, gopro.FrameError, gopro.ConnectError):
        assert issubclass(cls, gopro.GoproError)
    assert not issubclass(gopro.ProtocolError, gopro.ServerError)
    assert issubclass(gopro.ProtocolError, ConnectionError)
    for cls in (gopro.NothingInFlight, gopro.BlockingInRuntime):
        assert issubclass(cls, gopro.GoproError) and issubclass(cls, RuntimeError)
    assert issubclass(gopro.ConfigError, ValueError)
    assert issubclass(gopro.BindError, OSError)
    assert issubclass(gopro.ConnectionClosed, ConnectionError)
    assert issubclass(gopro.ConnectError, ConnectionError)
    assert issubclass(gopro.Timeout, TimeoutError)


def test_version() -> None:
    import re

    assert re.fullmatch(r"\d+\.\d+\.\d+.*", gopro.__version__)


def test_renamed_exceptions_are_the_same_classes_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="gopro.BodyTooLarge"):
        assert gopro.FrameTooLarge is gopro.BodyTooLarge  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="gopro.UnexpectedEof"):
        from gopro import IncompleteFrame  # type: ignore[attr-defined]
    assert IncompleteFrame is gopro.UnexpectedEof
    assert "FrameTooLarge" not in gopro.__all__
    with pytest.raises(AttributeError):
        gopro.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
