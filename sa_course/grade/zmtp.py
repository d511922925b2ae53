"""The grader's end of the kernel's shell socket: ZMTP 3.0, ZeroMQ's wire protocol, spoken over the unix
socket the kernel binds, so that every byte the kernel sends is counted before the grader keeps it.

libzmq hands over a message only once all of its frames have arrived, and holds them in the
receiving process until then: its size limit (``ZMQ_MAXMSGSIZE``) is per frame, so a kernel
could send one message of any number of 16 MiB frames into the grader's memory. Here each
frame's header is read first, and a frame over MAX_FRAME, a message over MAX_MESSAGE bytes or
MAX_FRAMES frames ends the connection (:class:`Refused`) before its bytes are read.

The grader is a DEALER with the NULL mechanism (RFC 23, ZMTP 3.0): a 64-byte greeting, a READY
command each way, then frames of a flags byte (1 more, 2 long, 4 command) and a 1- or 8-byte
size. Commands after the handshake (a PING) are read within the same bounds and dropped.
Deadlines are on :mod:`~sa_course.grade.clock`.
"""
from __future__ import annotations

import errno
import select
import socket
import struct
import time

from . import clock

MAX_FRAME = 16 << 20
MAX_MESSAGE = 16 << 20
MAX_FRAMES = 64
GREETING = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + bytes(31)
MORE, LONG, COMMAND = 1, 2, 4


class Closed(ConnectionError):
    """The kernel's end of the socket is gone."""


class Refused(ConnectionError):
    """The kernel sent something the grader does not read: too big, or not ZMTP."""


class Expired(TimeoutError):
    """The deadline passed."""


def _frame(body: bytes, flags: int) -> bytes:
    if len(body) < 256:
        return bytes([flags]) + bytes([len(body)]) + body
    return bytes([flags | LONG]) + struct.pack(">Q", len(body)) + body


def _ready() -> bytes:
    prop = lambda name, value: bytes([len(name)]) + name + struct.pack(">I", len(value)) + value
    return _frame(b"\x05READY" + prop(b"Socket-Type", b"DEALER"), COMMAND)


class Dealer:
    """One connection to a kernel's ROUTER socket at ``path``."""

    def __init__(self, path: str):
        self.path = path
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    # ------------------------------------------------------------------ bytes, with a deadline
    def _wait(self, writing: bool, deadline: float) -> None:
        """Wait until the socket can be read (written), at most until the deadline (then Expired)."""
        left = deadline - clock.now()
        if left <= 0:
            raise Expired()
        poller = select.poll()
        poller.register(self.sock, select.POLLOUT if writing else select.POLLIN)
        poller.poll(min(left, 0.25) * 1000)

    def _fill(self, size: int, deadline: float) -> None:
        """Read until the buffer holds ``size`` bytes."""
        while len(self.buffer) < size:
            try:
                chunk = self.sock.recv(min(1 << 20, size - len(self.buffer)))
            except BlockingIOError:
                self._wait(False, deadline)
                continue
            if not chunk:
                raise Closed("the kernel closed its socket")
            self.buffer += chunk

    def _take(self, size: int, deadline: float) -> bytes:
        self._fill(size, deadline)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                self._wait(True, deadline)

    # ------------------------------------------------------------------ the protocol
    def connect(self, deadline: float, alive) -> None:
        """Connect once the kernel has bound its socket, then the handshake; ``alive()`` False ends the wait."""
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.connect(self.path)
                break
            except OSError as exc:
                sock.close()
                if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                    raise
            if not alive():
                raise Closed("the kernel exited before it opened its socket")
            if clock.now() >= deadline:
                raise Expired()
            time.sleep(0.05)
        sock.setblocking(False)
        self.sock = sock
        self._send(GREETING + _ready(), deadline)
        greeting = self._take(64, deadline)
        if greeting[0] != 0xFF or greeting[9] != 0x7F or greeting[10] < 3 or greeting[12:16] != b"NULL":
            raise Refused("the kernel's socket does not speak ZMTP 3 with the NULL mechanism")
        flags, body = self._frame_in(deadline, MAX_FRAME)
        if not flags & COMMAND or not body.startswith(b"\x05READY"):
            raise Refused("the kernel's socket did not say READY")

    def _frame_in(self, deadline: float, most: int) -> tuple[int, bytes]:
        flags = self._take(1, deadline)[0]
        size = struct.unpack(">Q", self._take(8, deadline))[0] if flags & LONG else self._take(1, deadline)[0]
        if size > most:
            raise Refused(f"the kernel sent a frame of {size} bytes, more than the {most} the grader reads")
        return flags, self._take(size, deadline)

    def send(self, frames: list[bytes], deadline: float) -> None:
        self._send(b"".join(_frame(f, MORE if i < len(frames) - 1 else 0) for i, f in enumerate(frames)), deadline)

    def recv(self, deadline: float) -> list[bytes]:
        """The next message, at most MAX_FRAMES frames and MAX_MESSAGE bytes (commands are dropped)."""
        frames, total = [], 0
        while True:
            flags, body = self._frame_in(deadline, min(MAX_FRAME, MAX_MESSAGE - total))
            if flags & COMMAND:
                continue
            frames.append(body)
            total += len(body)
            if not flags & MORE:
                return frames
            if len(frames) >= MAX_FRAMES:
                raise Refused(f"the kernel sent a message of more than {MAX_FRAMES} frames")

    def readable(self, timeout: float) -> bool:
        """Whether a byte is waiting (or already read), within ``timeout`` seconds."""
        if self.buffer:
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
