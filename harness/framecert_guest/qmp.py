"""A small QMP client: JSON objects over a unix socket, one per line.

On connect QEMU sends a greeting ({"QMP": ...}); the client must answer with `qmp_capabilities` before any
other command. Each command gets {"return": ...} or {"error": {"class", "desc"}}; asynchronous events
({"event": ...}) may arrive in between and are kept in `events`.
"""
import json
import socket
import time
from typing import List, Optional

from .errors import GuestError


class QmpError(GuestError):
    """QEMU refused a command, or the monitor connection failed."""


class QmpClient:
    def __init__(self, sock: socket.socket, timeout: float = 30.0):
        self._sock = sock
        self._sock.settimeout(timeout)
        self._buf = b""
        self._next_id = 0
        self.events: List[dict] = []
        self.greeting: Optional[dict] = None

    @classmethod
    def connect(cls, path: str, timeout: float = 30.0) -> "QmpClient":
        """Connects (retrying while QEMU creates the socket) and negotiates capabilities."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                sock.close()
                if time.monotonic() > deadline:
                    raise QmpError(f"cannot connect to QMP socket {path}: {e.strerror}") from None
                time.sleep(0.05)
        client = cls(sock, timeout)
        client.handshake()
        return client

    def handshake(self):
        greeting = self._read_message()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting!r}")
        self.greeting = greeting["QMP"]
        self.execute("qmp_capabilities")

    def execute(self, command: str, arguments: Optional[dict] = None):
        """Runs one command and returns its "return" value; raises QmpError on an "error" reply."""
        self._next_id += 1
        msg = {"execute": command, "id": self._next_id}
        if arguments:
            msg["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:
            raise QmpError(f"QMP {command}: {e}") from None
        while True:
            reply = self._read_message()
            if "event" in reply:
                self.events.append(reply)
                continue
            if reply.get("id") != self._next_id:
                continue  # a reply to a command whose caller gave up (timeout)
            if "error" in reply:
                err = reply["error"]
                raise QmpError(f"QMP {command}: {err.get('class', '?')}: {err.get('desc', '')}")
            return reply.get("return")

    def _read_message(self) -> dict:
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise QmpError("QMP: no reply (timeout)") from None
            except OSError as e:
                raise QmpError(f"QMP: {e}") from None
            if not chunk:
                raise QmpError("QMP: connection closed by QEMU")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._read_message()
        try:
            return json.loads(line)
        except ValueError:
            raise QmpError(f"QMP: malformed message {line[:200]!r}") from None

    def close(self):
        try:
            self._sock.close()
        except OSError:
            pass
