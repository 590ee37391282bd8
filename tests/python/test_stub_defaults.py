"""The stub's literal defaults against the native module's signatures, and
those against the core's constants (``_DEFAULTS``, made from them)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any, Iterator

import gopro
from gopro import _gopro

STUB = Path(_gopro.__file__).with_name("_gopro.pyi")
if not STUB.exists():
    STUB = Path(__file__).resolve().parents[2] / "python" / "gopro" / "_gopro.pyi"

# The constant defaults, as the core documents them (a change there shows
# up here, and has to be made in the stub and the text signatures too).
# Every default of the stub: Server 16, Client 13, AsyncClient.connect 13,
# TlsConfig 4, TlsServerConfig 2, Frame 2, encode 2, decode 2, Decoder 2, and
# 1 each for Client.request, Client.send, AsyncClient.request,
# AsyncClient.send, Server.handler and Server.wait.
KNOWN_DEFAULTS = 62
KNOWN_CONSTANTS = 14


def stub_functions() -> Iterator[tuple[str, ast.FunctionDef]]:
    """Every function of the stub, by its name in the module (`Class.method`)."""
    tree = ast.parse(STUB.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    yield f"{node.name}.{item.name}", item


def stub_defaults(func: ast.FunctionDef) -> dict[str, Any]:
    args = func.args
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    return {arg.arg: ast.literal_eval(default) for arg, default in pairs}


def runtime(name: str) -> Any:
    obj: Any = _gopro
    for part in name.split("."):
        obj = getattr(obj, part)
    if name.endswith(".__new__"):
        # pyo3 gives a class's constructor signature to the class.
        obj = getattr(_gopro, name.split(".")[0])
    return obj


def test_stub_defaults_are_the_runtime_defaults() -> None:
    checked = 0
    constants: set[str] = set()
    for name, func in stub_functions():
        defaults = stub_defaults(func)
        if not defaults:
            continue
        params = inspect.signature(runtime(name)).parameters
        for param, value in defaults.items():
            assert value is not ..., f"{name}({param}): the stub elides a default"
            actual = params[param].default
            assert actual == value and type(actual) is type(value), (
                f"{name}({param}): stub {value!r}, runtime {actual!r}"
            )
            if value is not None:
                core = _gopro._DEFAULTS[param]
                assert core == value and type(core) is type(value), (
                    f"{name}({param}): {value!r}, the core's default is {core!r}"
                )
                constants.add(param)
            checked += 1
    assert checked >= KNOWN_DEFAULTS
    assert constants == set(_gopro._DEFAULTS), "a core default no signature uses"
    assert len(constants) >= KNOWN_CONSTANTS


def test_defaults_table_holds_the_module_constants() -> None:
    assert _gopro._DEFAULTS["max_body"] == gopro.DEFAULT_MAX_BODY
    assert _gopro._DEFAULTS["version"] == gopro.VERSION
