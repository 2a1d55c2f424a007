"""tcp-ports: a built-in asyncio TCP connect scan.

Options (``ctx.options``):

* ``ports``: port list (``"22,80,8000-8100"`` or a list of numbers); default: the
  target's port for a ``host:port`` target, else :data:`DEFAULT_PORTS`, a few dozen
  common service ports;
* ``concurrency``: connection attempts in flight at once (default 100);
* ``connect_timeout_s``: per-connection timeout (default 1.0); a port that neither
  accepts nor refuses in time counts as filtered;
* ``banner_timeout_s``: how long to wait for a service to speak first (default 0.3).

Connection attempts are paced to ``ctx.rps`` per second, and the whole scan is bounded by
``ctx.time_limit_s``: a scan that does not finish in time fails rather than report a
partial port list (a missing port would read as closed).
"""

from __future__ import annotations

import asyncio
import socket
from contextlib import suppress
from dataclasses import dataclass
from typing import ClassVar, Literal

from contracts.finding import Finding
from workers.tools.address import checked_address, is_ip
from workers.tools.base import RunContext, ToolError
from workers.tools.builtin import BuiltinCheck
from workers.tools.pacing import Pacer
from workers.tools.ports import port_list
from workers.tools.tcp_ports import parser
from workers.tools.tcp_ports.parser import OpenPort, PortScan

DEFAULT_PORTS: tuple[int, ...] = tuple(sorted(parser.WELL_KNOWN))
_BANNER_BYTES = 512


class TcpPortsTool(BuiltinCheck):
    name: ClassVar[str] = "tcp-ports"
    pool: ClassVar[str] = "default"
    target_kind: ClassVar[str] = "host"
    default_time_limit_s: ClassVar[int] = 300

    def collect(self, ctx: RunContext) -> bytes:
        address = checked_address(ctx.target)
        default = DEFAULT_PORTS if ctx.target.port is None else (ctx.target.port,)
        ports = port_list(ctx.options.get("ports", default))
        settings = _Settings.from_options(ctx.options)
        try:
            scan = asyncio.run(
                asyncio.wait_for(
                    _scan(address, ports, Pacer(ctx.rps), settings), timeout=ctx.time_limit_s
                )
            )
        except TimeoutError as exc:
            raise ToolError(
                f"tcp-ports did not finish {len(ports)} ports within {ctx.time_limit_s:g} s"
            ) from exc
        return scan.model_dump_json().encode()

    def parse(self, raw: bytes, ctx: RunContext) -> list[Finding]:
        return parser.parse(raw, ctx.target)


@dataclass(frozen=True)
class _Settings:
    concurrency: int
    connect_timeout: float
    banner_timeout: float

    @classmethod
    def from_options(cls, options: dict[str, object]) -> _Settings:
        return cls(
            concurrency=int(_number(options, "concurrency", 100, 1, 1000)),
            connect_timeout=_number(options, "connect_timeout_s", 1.0, 0.01, 60),
            banner_timeout=_number(options, "banner_timeout_s", 0.3, 0, 10),
        )


def _number(options: dict[str, object], key: str, default: float, low: float, high: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ToolError(f"invalid {key} {value!r}: give a number between {low:g} and {high:g}")
    return float(value)


@dataclass(frozen=True)
class _Outcome:
    state: Literal["open", "closed", "filtered", "error"]
    banner: bytes | None = None
    reason: str | None = None


async def _scan(address: str, ports: list[int], pacer: Pacer, settings: _Settings) -> PortScan:
    ip = address if is_ip(address) else await _resolve(address)
    slots = asyncio.Semaphore(settings.concurrency)

    async def probe(port: int) -> _Outcome:
        async with slots:
            await pacer.wait_async()
            return await _probe(ip, port, settings)

    outcomes = dict(zip(ports, await asyncio.gather(*(probe(p) for p in ports)), strict=True))
    for port, outcome in outcomes.items():
        if outcome.state == "error":
            # Unreachable host, no file descriptors left...: the port list would be wrong.
            raise ToolError(f"tcp-ports could not probe {ip} port {port}: {outcome.reason}")
    states = [outcome.state for outcome in outcomes.values()]
    return PortScan(
        ip=ip,
        ports_scanned=len(ports),
        open=[
            OpenPort(port=port, banner=_decode(outcome.banner))
            for port, outcome in outcomes.items()
            if outcome.state == "open"
        ],
        closed=states.count("closed"),
        filtered=states.count("filtered"),
    )


async def _resolve(name: str) -> str:
    """Resolve a host name once, so every connection goes to the same address."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ToolError(f"tcp-ports could not resolve {name}: {exc}") from exc
    return str(infos[0][4][0])


async def _probe(ip: str, port: int, settings: _Settings) -> _Outcome:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(ip, port), timeout=settings.connect_timeout
        )
    except ConnectionRefusedError:
        return _Outcome("closed")
    except TimeoutError:
        return _Outcome("filtered")
    except OSError as exc:
        return _Outcome("error", reason=str(exc))
    try:
        banner = b""
        if settings.banner_timeout > 0:
            with suppress(TimeoutError, OSError):
                banner = await asyncio.wait_for(
                    reader.read(_BANNER_BYTES), timeout=settings.banner_timeout
                )
        return _Outcome("open", banner=banner)
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


def _decode(banner: bytes | None) -> str | None:
    if not banner:
        return None
    return banner.decode("utf-8", errors="backslashreplace")
