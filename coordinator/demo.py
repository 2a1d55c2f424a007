"""``scanfleet demo``: deliberately weak services on loopback, then a real scan of them.

An HTTP server without security headers that sets a cookie without flags, an HTTPS
server with an expired self-signed certificate, and an extra open TCP port that
sends a banner. All bind to 127.0.0.1 on free ports and stop when the demo ends.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import socket
import socketserver
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


class _WeakHandler(http.server.BaseHTTPRequestHandler):
    server_version = "DemoHTTP/1.0"

    def do_GET(self) -> None:
        # Every path answers 200 with the same page (a soft 404), except the exposed git
        # metadata that http-exposure should find.
        if self.path == "/.git/HEAD":
            body, media_type = b"ref: refs/heads/main\n", "text/plain"
        else:
            body, media_type = b"<html><body>scanfleet demo</body></html>", "text/html"
        self.send_response(200)
        self.send_header("Content-Type", media_type)
        self.send_header("Set-Cookie", "session=demo-session-secret; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Scanners probe and drop connections: that is expected here, not an error."""


def expired_self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost that expired yesterday, signed by itself."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scanfleet-demo.local")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "demo.crt", directory / "demo.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class DemoServices:
    http_url: str
    https_url: str
    https_hostport: str
    extra_port: int

    @property
    def targets(self) -> list[str]:
        return ["127.0.0.1", self.http_url, self.https_url]

    @property
    def ports(self) -> str:
        """The demo's ports, for the port scanners (they are random high ports)."""
        http_port = int(self.http_url.rsplit(":", 1)[1].strip("/"))
        https_port = int(self.https_hostport.rsplit(":", 1)[1])
        return ",".join(str(p) for p in sorted({http_port, https_port, self.extra_port}))


def _serve(server: socketserver.BaseServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="demo-server", daemon=True)
    thread.start()
    return thread


def _banner_listener(stop: threading.Event) -> tuple[socket.socket, threading.Thread]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with conn, suppress(OSError):
                conn.sendall(b"SSH-2.0-OpenSSH_7.4 scanfleet-demo\r\n")

    thread = threading.Thread(target=accept, name="demo-banner", daemon=True)
    thread.start()
    return listener, thread


@contextmanager
def demo_services() -> Iterator[DemoServices]:
    stop = threading.Event()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="scanfleet-demo-") as tmp:
        http_server = _Server(("127.0.0.1", 0), _WeakHandler)
        stack.callback(http_server.server_close)
        stack.callback(http_server.shutdown)
        _serve(http_server)

        https_server = _Server(("127.0.0.1", 0), _WeakHandler)
        cert, key = expired_self_signed(Path(tmp))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        https_server.socket = context.wrap_socket(https_server.socket, server_side=True)
        stack.callback(https_server.server_close)
        stack.callback(https_server.shutdown)
        _serve(https_server)

        listener, _thread = _banner_listener(stop)
        stack.callback(listener.close)
        stack.callback(stop.set)
        http_port = http_server.server_address[1]
        https_port = https_server.server_address[1]
        yield DemoServices(
            http_url=f"http://127.0.0.1:{http_port}/",
            https_url=f"https://127.0.0.1:{https_port}/",
            https_hostport=f"127.0.0.1:{https_port}",
            extra_port=listener.getsockname()[1],
        )
