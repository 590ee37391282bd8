"""Type stubs of the native module gopro._gopro (checked by mypy.stubtest)."""

import enum
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, TypeVar, Union

from typing_extensions import final

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

__all__ = [
    "DEFAULT_MAX_BODY",
    "HEADER_LEN",
    "MAGIC",
    "VERSION",
    "AsyncClient",
    "BadMagic",
    "BindError",
    "BlockingInRuntime",
    "BodyTooLarge",
    "BufferTooSmall",
    "Client",
    "ClientStats",
    "Command",
    "ConfigError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionInfo",
    "ConnectionLost",
    "Decoder",
    "Frame",
    "FrameError",
    "GoAway",
    "GoproError",
    "NothingInFlight",
    "ProtocolError",
    "Server",
    "ServerError",
    "Timeout",
    "TlsConfig",
    "TlsConfigError",
    "TlsError",
    "TlsServerConfig",
    "UnexpectedEof",
    "UnexpectedReply",
    "UnsupportedVersion",
    "__version__",
    "current_connection",
    "decode",
    "encode",
]

__version__: str
DEFAULT_MAX_BODY: int
HEADER_LEN: int
MAGIC: int
VERSION: int
# Every constant default of the signatures, by parameter name (the core's
# values; the stub's literal defaults are tested against them).
_DEFAULTS: dict[str, object]
# One exception of every kind of core error, by its Rust name (the README's
# error table is tested against it).
def _error_samples() -> list[tuple[str, BaseException]]: ...

_F = TypeVar("_F", bound=Callable[..., Any])
_CommandLike = Union["Command", int]
_Request = Union["Frame", tuple[_CommandLike, Buffer]]
_Reply = Union[Buffer, str, "Frame", None]
_Path = Union[str, "os.PathLike[str]"]

class Command(enum.IntEnum):
    HEARTBEAT = 0
    MESSAGE = 1
    LOGIN = 2
    ERROR = 3
    GOAWAY = 4

class GoproError(Exception): ...

class FrameError(GoproError, ValueError):
    kind: str

class BodyTooLarge(FrameError): ...
class BadMagic(FrameError): ...
class UnsupportedVersion(FrameError): ...
class UnexpectedEof(FrameError): ...
class BufferTooSmall(GoproError, ValueError): ...

class ProtocolError(GoproError, ConnectionError):
    kind: str

class ServerError(GoproError):
    reason: str

class GoAway(GoproError):
    reason: str
    unanswered: int

class ConnectionClosed(GoproError, ConnectionError):
    unanswered: int | None

class ConnectionLost(ConnectionClosed):
    reason: str

class ConnectError(GoproError, ConnectionError): ...

class TlsError(ConnectError):
    reason: str
class Timeout(GoproError, TimeoutError): ...

class UnexpectedReply(GoproError):
    request: int
    reply: Frame

class NothingInFlight(GoproError, RuntimeError):
    wanted: int
    in_flight: int

class BlockingInRuntime(GoproError, RuntimeError): ...

class ConfigError(GoproError, ValueError):
    setting: str

class BindError(GoproError, OSError): ...
class TlsConfigError(ConfigError): ...

@final
class TlsConfig:
    """A client's TLS settings: the CA file (None: the system's roots), an
    optional client certificate and key, and the name the server's
    certificate must carry. The files are read here (TlsConfigError)."""

    def __new__(
        cls,
        ca_file: _Path | None = None,
        cert_file: _Path | None = None,
        key_file: _Path | None = None,
        server_name: str | None = None,
    ) -> TlsConfig: ...
    @property
    def ca_file(self) -> str | None: ...
    @property
    def cert_file(self) -> str | None: ...
    @property
    def key_file(self) -> str | None: ...
    @property
    def server_name(self) -> str | None: ...

@final
class TlsServerConfig:
    """A server's TLS settings: its certificate and key, and optionally the
    CA client certificates must chain to. The files are read here
    (TlsConfigError); Server.reload_tls() reads them again."""

    def __new__(
        cls,
        cert_file: _Path,
        key_file: _Path,
        client_ca_file: _Path | None = None,
        *,
        client_auth: Literal["required", "optional"] = "required",
    ) -> TlsServerConfig: ...
    @property
    def cert_file(self) -> str: ...
    @property
    def key_file(self) -> str: ...
    @property
    def client_ca_file(self) -> str | None: ...
    @property
    def client_auth(self) -> Literal["required", "optional"]: ...

@final
class ConnectionInfo:
    """The connection a handler or authenticator serves (current_connection())."""

    @property
    def peer(self) -> str:
        """The "host:port" of the client (behind a PROXY balancer, from its header)."""
    @property
    def local(self) -> str | None: ...
    @property
    def tls(self) -> bool: ...
    @property
    def tls_version(self) -> str | None: ...
    @property
    def server_name(self) -> str | None: ...
    @property
    def client_subject(self) -> str | None: ...
    @property
    def client_common_name(self) -> str | None: ...
    @property
    def client_dns_names(self) -> tuple[str, ...]: ...
    @property
    def client_ip_addresses(self) -> tuple[str, ...]: ...
    @property
    def client_uris(self) -> tuple[str, ...]: ...
    @property
    def client_emails(self) -> tuple[str, ...]: ...

def current_connection() -> ConnectionInfo:
    """The connection being served, inside a handler or the authenticator
    (a coroutine's too); RuntimeError anywhere else."""

@final
class Frame:
    def __new__(
        cls, command: _CommandLike, body: Buffer | None = None, version: int = 1
    ) -> Frame: ...
    @property
    def command(self) -> int:
        """A Command for the named codes, an int for the others."""
    @property
    def body(self) -> bytes: ...
    @property
    def version(self) -> int: ...
    def __bytes__(self) -> bytes: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, tuple[int, bytes, int]]: ...

def encode(
    command: _CommandLike, body: Buffer | None = None, *, max_body: int = 10485760
) -> bytes: ...
def decode(data: Buffer, *, max_body: int = 10485760, version: int | None = None) -> Frame: ...

@final
class Decoder:
    def __new__(cls, max_body: int = 10485760, *, version: int | None = None) -> Decoder: ...
    def feed(self, data: Buffer) -> None: ...
    @property
    def max_body(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    def eof(self) -> list[Frame]: ...
    def __iter__(self) -> Iterator[Frame]: ...
    def frames(self) -> list[Frame]: ...
    def __next__(self) -> Frame: ...

@final
class ClientStats:
    @property
    def requests(self) -> int: ...
    @property
    def replies(self) -> int: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def resent(self) -> int: ...
    @property
    def lost(self) -> int: ...

@final
class Client:
    def __new__(
        cls,
        addr: str | list[str] = "127.0.0.1:8888",
        timeout: float = 30.0,
        *,
        connect_timeout: float = 10.0,
        max_body: int = 10485760,
        keep_alive: float | None = None,
        reconnect: bool = False,
        login: Buffer | str | None = None,
        max_in_flight: int = 1024,
        max_queued_bytes: int = 16777216,
        reconnect_delay: float = 0.1,
        reconnect_max_delay: float = 2.0,
        repeatable: Iterable[_CommandLike] | None = None,
        tls: TlsConfig | bool | None = None,
    ) -> Client: ...
    def request(self, command: _CommandLike, body: Buffer | None = None) -> Frame: ...
    def heartbeat(self) -> None: ...
    def login(self, credentials: Buffer | str) -> None: ...
    def send(self, command: _CommandLike, body: Buffer | None = None) -> None: ...
    def flush(self) -> None: ...
    def recv(self) -> Frame: ...
    def send_many(self, requests: Iterable[_Request]) -> None: ...
    def recv_many(self, n: int) -> list[Frame]: ...
    def request_many(self, requests: Iterable[_Request]) -> list[Frame]: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def addr(self) -> str: ...
    @property
    def stats(self) -> ClientStats: ...
    def __enter__(self) -> Client: ...
    def __exit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> bool: ...

@final
class AsyncClient:
    @staticmethod
    def connect(
        addr: str | list[str] = "127.0.0.1:8888",
        timeout: float = 30.0,
        *,
        connect_timeout: float = 10.0,
        max_body: int = 10485760,
        keep_alive: float | None = None,
        reconnect: bool = False,
        login: Buffer | str | None = None,
        max_in_flight: int = 1024,
        max_queued_bytes: int = 16777216,
        reconnect_delay: float = 0.1,
        reconnect_max_delay: float = 2.0,
        repeatable: Iterable[_CommandLike] | None = None,
        tls: TlsConfig | bool | None = None,
    ) -> Awaitable[AsyncClient]: ...
    def request(
        self, command: _CommandLike, body: Buffer | None = None
    ) -> Awaitable[Frame]: ...
    def heartbeat(self) -> Awaitable[None]: ...
    def login(self, credentials: Buffer | str) -> Awaitable[None]: ...
    def send(self, command: _CommandLike, body: Buffer | None = None) -> Awaitable[None]: ...
    def flush(self) -> Awaitable[None]: ...
    def recv(self) -> Awaitable[Frame]: ...
    def send_many(self, requests: Iterable[_Request]) -> Awaitable[None]: ...
    def recv_many(self, n: int) -> Awaitable[list[Frame]]: ...
    def request_many(self, requests: Iterable[_Request]) -> Awaitable[list[Frame]]: ...
    def close(self) -> Awaitable[None]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def stats(self) -> ClientStats: ...
    def __aenter__(self) -> Awaitable[AsyncClient]: ...
    def __aexit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> Awaitable[bool]: ...

@final
class Server:
    def __new__(
        cls,
        listen: str = "127.0.0.1:8888",
        *,
        reuse_port: bool = False,
        read_timeout: float = 60.0,
        write_timeout: float = 10.0,
        max_body: int = 10485760,
        max_connections: int = 10000,
        grace: float = 10.0,
        prelogin_max_body: int = 16384,
        max_login_failures: int = 3,
        max_buffered_replies: int = 1048576,
        memory_budget: int = 268435456,
        raise_nofile_limit: bool = True,
        tls: TlsServerConfig | None = None,
        tls_handshake_timeout: float = 10.0,
        metrics_listen: str | None = None,
        metrics_max_scrapers: int = 64,
        metrics_header_timeout: float = 10.0,
        proxy_protocol: Iterable[str] | None = None,
    ) -> Server:
        """`reuse_port`: bind with SO_REUSEPORT, so that several servers
        (each with it on) listen on one port and Linux spreads new
        connections among them; off, a port in use raises BindError from
        start().

        `metrics_listen`: "host:port" to serve Prometheus metrics on at
        /metrics, to at most `metrics_max_scrapers` scrapes at once (one
        more is closed at once), each closed unless its request's headers
        come within `metrics_header_timeout` seconds.

        `proxy_protocol`: the trusted balancers' addresses or networks
        (``["10.0.0.0/8", "127.0.0.1"]``; a lone str raises TypeError);
        only they may connect, each connection starting with a PROXY header
        (v1 or v2) whose client `current_connection().peer` then gives."""
    def handler(self, code: _CommandLike, func: _F | None = None) -> Any:
        """`@server.handler(code)` or `server.handler(code, func)`."""
    def authenticator(self, func: _F) -> _F: ...
    def start(self) -> None: ...
    def serve_forever(self) -> None: ...
    def shutdown(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def stats(self) -> dict[str, Any]:
        """Counters: connections, connections_accepted, tls_handshakes,
        proxy_headers, frames_in, frames_out, bytes_buffered, memory_budget,
        and errors (a dict of counts by kind, tls and proxy among them)."""
    def reload_tls(self) -> None: ...
    @property
    def running(self) -> bool: ...
    @property
    def local_addr(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def metrics_addr(self) -> str | None:
        """Where the metrics are served ("host:port"), None without metrics_listen."""
    @property
    def listen(self) -> str: ...
    def __enter__(self) -> Server: ...
    def __exit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> bool: ...
    def serve(self) -> Awaitable[None]: ...
    def __aenter__(self) -> Awaitable[Server]: ...
    def __aexit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> Awaitable[bool]: ...
