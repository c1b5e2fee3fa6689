"""A minimal GDB remote-protocol client for QEMU's gdbstub: one long-lived connection, used only while the
VM is stopped (QMP `stop`), to read every vCPU's registers.

QEMU pauses the VM when a gdb client connects (resume it with QMP `cont`) and sends an unrequested stop
packet (T..) whenever the VM stops while a client is attached: those are acknowledged and skipped.
The `g` packet of qemu-system-x86_64 (i386-64bit.xml) is 608 bytes: rax rbx rcx rdx rsi rdi rbp rsp r8..r15
rip (8 bytes each), eflags cs ss ds es fs gs (4 each), fs_base gs_base k_gs_base cr0 cr2 cr3 cr4 cr8 efer
(8 each), then the x87/SSE state.
"""
import socket
import struct
import time
from typing import List, Optional

from .errors import GuestError
from .model import Registers

G_SIZE = 608
OFF = {"rax": 0, "rbx": 8, "rcx": 16, "rdx": 24, "rsi": 32, "rdi": 40, "rbp": 48, "rsp": 56, "rip": 128}
OFF4 = {"eflags": 136, "cs": 140, "ss": 144}
OFF8 = {"fs_base": 164, "gs_base": 172, "k_gs_base": 180, "cr0": 188, "cr2": 196, "cr3": 204, "cr4": 212,
        "efer": 228}


class GdbError(GuestError):
    pass


def _checksum(data: bytes) -> bytes:
    return b"%02x" % (sum(data) & 0xff)


def parse_g(hexdata: str) -> dict:
    raw = bytes.fromhex(hexdata)
    if len(raw) < G_SIZE:
        raise GdbError(f"short register block: {len(raw)} bytes, expected {G_SIZE}")
    regs = {name: struct.unpack_from("<Q", raw, off)[0] for name, off in OFF.items()}
    regs.update({name: struct.unpack_from("<I", raw, off)[0] for name, off in OFF4.items()})
    regs.update({name: struct.unpack_from("<Q", raw, off)[0] for name, off in OFF8.items()})
    return regs


class GdbStub:
    def __init__(self, path, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise GdbError(f"cannot connect to the gdbstub at {path}") from None
                time.sleep(0.05)
        self.buf = b""
        self.threads: Optional[List[str]] = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise GdbError("gdbstub closed the connection")
        self.buf += chunk

    def _read_packet(self) -> str:
        """Next packet's payload (acks '+' and stray '-' skipped); acknowledges it."""
        while True:
            while self.buf[:1] in (b"+", b"-"):
                self.buf = self.buf[1:]
            start = self.buf.find(b"$")
            end = self.buf.find(b"#", start + 1) if start >= 0 else -1
            if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                payload = self.buf[start + 1:end]
                self.buf = self.buf[end + 3:]
                self.sock.sendall(b"+")
                return payload.decode()
            self._fill()

    def request(self, payload: str) -> str:
        data = payload.encode()
        self.sock.sendall(b"$" + data + b"#" + _checksum(data))
        while True:
            reply = self._read_packet()
            # Unrequested stop notifications (the VM was stopped by QMP).
            if reply[:1] in ("T", "S") and not payload.startswith("?"):
                continue
            return reply

    def vcpu_threads(self) -> List[str]:
        if self.threads is None:
            ids: List[str] = []
            reply = self.request("qfThreadInfo")
            while reply.startswith("m"):
                ids += [t for t in reply[1:].split(",") if t]
                reply = self.request("qsThreadInfo")
            if not ids:
                raise GdbError(f"gdbstub lists no vCPU threads ({reply!r})")
            self.threads = ids
        return self.threads

    def registers(self) -> List[Registers]:
        """Every vCPU's registers, in vCPU order. The VM must be stopped."""
        out = []
        for cpu, tid in enumerate(self.vcpu_threads()):
            if self.request(f"Hg{tid}") != "OK":
                raise GdbError(f"gdbstub refused Hg{tid}")
            regs = parse_g(self.request("g"))
            regs["cpu"] = cpu
            out.append(Registers.from_json(regs))
        return out
