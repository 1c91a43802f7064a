"""A small asyncio client for the shotline wire protocol (docs/protocol.md), on aioquic + msgpack.

Written from docs/protocol.md alone, to prove that the document is enough to talk to the server
from another language. Transport: QUIC v1, TLS 1.3, ALPN ``shotline/1``; one request per
client-opened bidirectional stream; a frame is a 4-byte big-endian length followed by one msgpack
map with string keys. Requests carry ``op``, responses ``type``.

Usage::

    import asyncio
    from shotline_client import connect

    async def main() -> None:
        async with await connect("127.0.0.1", 7878, pins_file="pins.json") as client:
            await client.login("alice", "password123")
            sub = await client.submit("singlequdit", {"e0": {
                "instructions": [["load", [0], [5]], ["measure", [0], []]],
                "num_wires": 1, "shots": 10}})
            async for event in client.watch(sub["job_id"]):
                print(event)
            print(await client.result(sub["job_id"]))

    asyncio.run(main())

Certificate trust is either trust on first use (``pins_file``: a JSON object
``{"host:port": "sha256:<hex>"}``, the same format the Rust client writes) or a CA file
(``ca_file``). In pin mode the TLS layer runs with ``verify_mode=ssl.CERT_NONE`` (aioquic still
checks the handshake signature against the certificate's key); after the handshake the leaf
certificate is read from aioquic's TLS context, attribute
``QuicConnectionProtocol._quic.tls._peer_certificate`` (a ``cryptography`` ``x509.Certificate``,
private in aioquic 1.x; its DER bytes are the bytes the server sent), and its fingerprint
``sha256:`` + lowercase hex of SHA-256 over the DER is compared with the pin before any request
is sent. On first use the pin is recorded once ``login`` succeeded (or when
:meth:`Client.accept_first_use` is called).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Optional

import msgpack
from aioquic.asyncio import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

__all__ = [
    "ALPN",
    "Client",
    "ProtocolError",
    "PinMismatchError",
    "ShotlineError",
    "TERMINAL_STATUSES",
    "connect",
    "decode_frame_body",
    "encode_frame",
    "fingerprint",
    "parse_server",
]

ALPN = "shotline/1"
"""The ALPN protocol name; carries the protocol's major version."""

MAX_FRAME = 8 * 1024 * 1024
"""Largest frame body this client sends or accepts (the server's default limit)."""

TERMINAL_STATUSES = frozenset({"DONE", "ERROR", "CANCELLED"})
"""Job statuses after which nothing changes any more."""

KEEP_ALIVE_S = 5.0
"""Interval of QUIC pings; the server drops a connection after 60 s without traffic."""

Message = dict[str, Any]


class ShotlineError(Exception):
    """The server answered ``{"type": "error"}``.

    Attributes mirror ErrorBody: ``code`` (e.g. ``VALIDATION_FAILED``), ``message``, ``path``
    (offending field path or ``None``), ``details`` (list of ValidationError maps) and
    ``total_errors``.
    """

    def __init__(
        self,
        code: str,
        message: str,
        path: Optional[str] = None,
        details: Optional[list[Message]] = None,
        total_errors: int = 0,
    ) -> None:
        self.code = code
        self.message = message
        self.path = path
        self.details: list[Message] = list(details or [])
        self.total_errors = total_errors
        text = f"{code}: {message}"
        if path:
            text += f" (at {path})"
        super().__init__(text)


class ProtocolError(Exception):
    """The server's bytes did not follow the protocol, or the transport failed."""


class PinMismatchError(Exception):
    """The server presented a certificate different from the one pinned for it."""

    def __init__(self, server: str, expected: str, presented: str, pins_file: str) -> None:
        self.server = server
        self.expected = expected
        self.presented = presented
        self.pins_file = pins_file
        super().__init__(
            f"the certificate of server {server} has CHANGED since it was pinned.\n"
            f"  pinned:    {expected}\n  presented: {presented}\n"
            "This can mean the server was reinstalled or its certificate replaced, or that someone "
            "is intercepting the connection. Check the new fingerprint with the server's "
            f"administrator; to accept it, remove the entry for {server} from {pins_file}."
        )


def parse_server(server: str) -> tuple[str, int]:
    """Splits ``HOST:PORT`` (``[v6]:PORT`` for IPv6) into host and port; raises ``ValueError``."""
    host, sep, port_text = server.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"server {server!r} must be HOST:PORT, e.g. 127.0.0.1:7878")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} of server {server!r} must be in 1..=65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def fingerprint(der: bytes) -> str:
    """The pin of a certificate: ``sha256:`` + lowercase hex of SHA-256 over its DER bytes."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def encode_frame(message: Message) -> bytes:
    """One frame: 4-byte big-endian body length + the msgpack map (string keys)."""
    body = msgpack.packb(message, use_bin_type=True)
    if not body:
        raise ProtocolError("refusing to send an empty frame")
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"request of {len(body)} bytes exceeds the frame limit of {MAX_FRAME}")
    return struct.pack(">I", len(body)) + body


def decode_frame_body(body: bytes) -> Message:
    """Decodes one frame body to a map; exactly one msgpack value, no trailing bytes."""
    try:
        value = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except msgpack.ExtraData as exc:
        raise ProtocolError(f"{len(exc.extra)} trailing bytes after the response map") from exc
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"the response is not valid msgpack: {exc}") from exc
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ProtocolError(f"the response is not a map with a string 'type': {value!r:.200}")
    return value


def _load_pins(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            pins = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"bad pins file {path}: {exc}") from exc
    if not isinstance(pins, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in pins.items()
    ):
        raise ProtocolError(f'bad pins file {path}: expected a JSON object {{"host:port": "sha256:..."}}')
    return pins


def _save_pin(path: str, server: str, pin: str) -> None:
    pins = _load_pins(path)
    pins[server] = pin
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(pins, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


class _Protocol(QuicConnectionProtocol):
    """aioquic's stream protocol, plus: a stream reset by the server ends its reader with an error."""

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamReset):
            reader = self._stream_readers.get(event.stream_id)
            if reader is not None:
                reader.set_exception(
                    ProtocolError(f"the server reset the stream (error code {event.error_code})")
                )
            return
        super().quic_event_received(event)
        if isinstance(event, events.StreamDataReceived) and event.end_stream:
            self._stream_readers.pop(event.stream_id, None)


@dataclass
class Client:
    """A connection to a shotline server. Create it with :func:`connect`; close it with
    :meth:`close` or ``async with``. ``token`` is set by :meth:`login` and sent with every
    other request; methods return the response fields as plain dicts."""

    server: str
    protocol: QuicConnectionProtocol
    presented_pin: str
    pins_file: Optional[str] = None
    first_use: bool = False
    timeout: float = 60.0
    token: Optional[str] = None
    _exit: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _keepalive: Optional[asyncio.Task[None]] = None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection (idempotent)."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keepalive
            self._keepalive = None
        await self._exit.aclose()

    def accept_first_use(self) -> Optional[str]:
        """In pin mode, records the certificate seen on first use in the pins file (call it once
        the session proved genuine, e.g. after a successful login). Returns the pin recorded."""
        if self.pins_file is None or not self.first_use:
            return None
        _save_pin(self.pins_file, self.server, self.presented_pin)
        self.first_use = False
        return self.presented_pin

    # ---- transport -------------------------------------------------------------------------

    async def _open(self, request: Message) -> asyncio.StreamReader:
        reader, writer = await self.protocol.create_stream()
        writer.write(encode_frame(request))
        writer.write_eof()
        return reader

    @staticmethod
    async def _read_frame(reader: asyncio.StreamReader) -> Optional[Message]:
        """Reads one frame; ``None`` at a clean end of stream before a frame starts."""
        try:
            header = await reader.readexactly(4)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise ProtocolError("the stream ended inside a frame header") from exc
        (length,) = struct.unpack(">I", header)
        if length == 0 or length > MAX_FRAME:
            raise ProtocolError(f"response frame length {length} outside 1..={MAX_FRAME}")
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError(
                f"the stream ended after {len(exc.partial)} of {length} response bytes"
            ) from exc
        return decode_frame_body(body)

    @staticmethod
    def _check(response: Message, expected: str) -> Message:
        kind = response["type"]
        if kind == "error":
            body = response.get("error")
            if not isinstance(body, dict):
                raise ProtocolError(f"error response without an 'error' map: {response!r:.200}")
            raise ShotlineError(
                str(body.get("code", "")),
                str(body.get("message", "")),
                body.get("path"),
                body.get("details") or [],
                int(body.get("total_errors") or 0),
            )
        if kind != expected:
            raise ProtocolError(f"expected a '{expected}' response, got '{kind}'")
        return response

    async def request(self, request: Message, expected: str) -> Message:
        """Sends one request on a new stream and returns its single response, checked to be of
        type ``expected``; raises :class:`ShotlineError` on an error response."""

        async def exchange() -> Message:
            reader = await self._open(request)
            response = await self._read_frame(reader)
            if response is None:
                raise ProtocolError(f"the server closed the stream without answering '{request['op']}'")
            return response

        try:
            response = await asyncio.wait_for(exchange(), self.timeout)
        except asyncio.TimeoutError as exc:
            raise ProtocolError(f"no answer to '{request['op']}' within {self.timeout} s") from exc
        return self._check(response, expected)

    def _authed(self, op: str, **fields: Any) -> Message:
        if self.token is None:
            raise ShotlineError("UNAUTHENTICATED", "not logged in: call login() first")
        return {"op": op, "token": self.token, **fields}

    # ---- requests --------------------------------------------------------------------------

    async def login(self, user: str, password: str) -> Message:
        """Logs in; stores and returns the ``logged_in`` response (``token``, ``user``,
        ``expires_at``). On first use in pin mode, records the server's pin."""
        response = await self.request({"op": "login", "user": user, "password": password}, "logged_in")
        self.token = response["token"]
        self.accept_first_use()
        return response

    async def logout(self) -> None:
        """Revokes the token on the server and forgets it."""
        await self.request(self._authed("logout"), "logged_out")
        self.token = None

    async def whoami(self) -> Message:
        """The caller: ``{"user": str, "is_admin": bool}``."""
        response = await self.request(self._authed("whoami"), "whoami")
        return {"user": response["user"], "is_admin": response["is_admin"]}

    async def backends(self) -> list[Message]:
        """BackendSummary maps of every backend."""
        return (await self.request(self._authed("backends"), "backends"))["backends"]

    async def backend(self, name: str) -> Message:
        """``{"config": BackendConfig, "status": BackendStatus}`` of one backend."""
        response = await self.request(self._authed("backend", name=name), "backend")
        return {"config": response["config"], "status": response["status"]}

    async def submit(
        self,
        backend: str,
        job: Message,
        *,
        qobj_id: Optional[str] = None,
        priority: int = 0,
        tags: Optional[list[str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> Message:
        """Submits ``job`` (experiment name -> experiment, in insertion order); returns
        ``{"job_id", "status": StatusRecord, "duplicate"}``."""
        request = self._authed("submit", backend=backend, job=job, priority=int(priority), tags=list(tags or []))
        if qobj_id is not None:
            request["qobj_id"] = qobj_id
        if idempotency_key is not None:
            request["idempotency_key"] = idempotency_key
        response = await self.request(request, "submitted")
        return {k: response[k] for k in ("job_id", "status", "duplicate")}

    async def status(self, job_id: str) -> Message:
        """The StatusRecord of a job (``job_id``, ``status``, ``detail``, ``error_message``)."""
        return (await self.request(self._authed("status", job_id=job_id), "status"))["status"]

    async def result(self, job_id: str) -> Message:
        """The JobResult of a terminal job (``RESULT_NOT_READY`` otherwise)."""
        return (await self.request(self._authed("result", job_id=job_id), "result"))["result"]

    async def cancel(self, job_id: str) -> Message:
        """Cancels a job; returns the StatusRecord right after the request (``CANCELLED`` for a
        queued job; a running job stops at the next shot boundary). ``ALREADY_FINISHED`` if
        the job is terminal."""
        return (await self.request(self._authed("cancel", job_id=job_id), "cancelled"))["status"]

    async def jobs(self, **filters: Any) -> Message:
        """A page of the caller's jobs, newest first: ``{"jobs": [JobSummary], "next": cursor or
        None}``. Filters: ``status``, ``backend``, ``since``, ``until``, ``limit``, ``after``,
        ``all``."""
        request = self._authed("jobs", **{k: v for k, v in filters.items() if v is not None})
        response = await self.request(request, "jobs")
        return {"jobs": response["jobs"], "next": response.get("next")}

    async def watch(
        self, job_id: str, *, shots: bool = False, idle_timeout: Optional[float] = None
    ) -> AsyncIterator[Message]:
        """Yields the events of a job (``{"kind": "status"|"progress"|"shot", ...}``): first its
        current status, then every change and progress, until the server ends the stream after
        the terminal status. ``idle_timeout`` bounds the wait for each event (default: none)."""
        reader = await self._open(self._authed("watch", job_id=job_id, shots=shots))
        while True:
            try:
                response = await asyncio.wait_for(self._read_frame(reader), idle_timeout)
            except asyncio.TimeoutError as exc:
                raise ProtocolError(f"no watch event for job {job_id} within {idle_timeout} s") from exc
            if response is None:
                return
            event = self._check(response, "event").get("event")
            if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
                raise ProtocolError(f"an 'event' response without an event map: {response!r:.200}")
            yield event


async def _keep_alive(protocol: QuicConnectionProtocol) -> None:
    while True:
        await asyncio.sleep(KEEP_ALIVE_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(protocol.ping(), KEEP_ALIVE_S)


async def connect(
    host: str,
    port: int,
    pins_file: Optional[str] = None,
    ca_file: Optional[str] = None,
    *,
    handshake_timeout: float = 10.0,
    request_timeout: float = 60.0,
) -> Client:
    """Opens a QUIC connection to ``host:port`` and checks the server's certificate.

    Exactly one of ``pins_file`` (trust on first use, pins keyed by ``"host:port"``) and
    ``ca_file`` (WebPKI verification of ``host``) must be given. Raises
    :class:`PinMismatchError` if the certificate differs from the pinned one, and
    :class:`ProtocolError` if the handshake fails or times out.
    """
    if (pins_file is None) == (ca_file is None):
        raise ValueError("give exactly one of pins_file (trust on first use) and ca_file")
    server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=[ALPN],
        idle_timeout=30.0,
        server_name=host,
        max_datagram_frame_size=None,
    )
    if ca_file is not None:
        config.verify_mode = ssl.CERT_REQUIRED
        config.load_verify_locations(cafile=ca_file)
    else:
        config.verify_mode = ssl.CERT_NONE

    created: list[_Protocol] = []

    def make_protocol(*a: Any, **kw: Any) -> _Protocol:
        created.append(_Protocol(*a, **kw))
        return created[-1]

    stack = contextlib.AsyncExitStack()
    try:
        protocol = await asyncio.wait_for(
            stack.enter_async_context(
                quic_connect(host, port, configuration=config, create_protocol=make_protocol)
            ),
            handshake_timeout,
        )
    except asyncio.TimeoutError as exc:
        await stack.aclose()
        raise ProtocolError(
            f"no QUIC handshake with {server} within {handshake_timeout} s "
            "(is the server running and the port right?)"
        ) from exc
    except OSError as exc:  # includes the ConnectionError of a failed handshake
        await stack.aclose()
        closed = getattr(created[0]._quic, "_close_event", None) if created else None
        reason = closed.reason_phrase if closed is not None and closed.reason_phrase else repr(exc)
        raise ProtocolError(f"cannot connect to {server}: {reason}") from exc

    # The leaf certificate the server presented (see the module docstring).
    peer = getattr(getattr(protocol._quic, "tls", None), "_peer_certificate", None)
    if peer is None:
        await stack.aclose()
        raise ProtocolError(f"{server}: no peer certificate after the handshake (aioquic changed?)")
    from cryptography.hazmat.primitives.serialization import Encoding  # installed with aioquic

    presented = fingerprint(peer.public_bytes(Encoding.DER))
    first_use = False
    if pins_file is not None:
        pinned = _load_pins(pins_file).get(server)
        if pinned is None:
            first_use = True
        elif pinned != presented:
            await stack.aclose()
            raise PinMismatchError(server, pinned, presented, pins_file)

    client = Client(
        server=server,
        protocol=protocol,
        presented_pin=presented,
        pins_file=pins_file,
        first_use=first_use,
        timeout=request_timeout,
        _exit=stack,
    )
    client._keepalive = asyncio.get_running_loop().create_task(_keep_alive(protocol))
    return client
