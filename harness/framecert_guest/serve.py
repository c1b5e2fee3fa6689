"""A `framecert <command> --config C --serve` process (guest-walk, guest-cfi): loaded before the freeze, it
said so on its first line; then one JSON request per line in, one JSON answer per line out."""
import json
import subprocess
from pathlib import Path
from typing import Any, Dict, IO, Optional, Tuple, cast

from .errors import GuestError
from .paths import framecert_bin


class Server:
    def __init__(self, command: str, config_path: Path, what: str):
        """what: how errors name it ("the guest walker", "the CFI oracle")."""
        self.command, self.what = command, what
        self.proc: Optional[subprocess.Popen] = subprocess.Popen(
            [str(framecert_bin()), command, "--config", str(config_path), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = self._out.readline()
        if not ready:
            err = self._err.read().strip()
            self.close()
            raise GuestError(f"framecert {command} did not start: {err}")
        try:
            self.ready: Dict[str, Any] = json.loads(ready)
        except ValueError:
            self.close()
            raise GuestError(f"framecert {command} said {ready.strip()[:200]!r} instead of ready") from None

    @property
    def _out(self) -> IO[str]:
        return cast(IO[str], self.proc.stdout if self.proc else None)

    @property
    def _err(self) -> IO[str]:
        return cast(IO[str], self.proc.stderr if self.proc else None)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request_line(self, request: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
        """Sends one request; returns the answer and its raw line. A dead server or an {"error"} answer is a
        GuestError."""
        if self.proc is None or self.proc.stdin is None:
            raise GuestError(f"{self.what} is not running")
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError as e:
            if self.proc.poll() is None:
                raise GuestError(f"cannot talk to {self.what}: {e}") from None
        return self.next_line()

    def next_line(self) -> Tuple[Dict[str, Any], str]:
        """The next line of an answer that has more than one (a request asked for it)."""
        if self.proc is None:
            raise GuestError(f"{self.what} is not running")
        try:
            line = self._out.readline()
        except OSError as e:
            line = ""
            if self.proc.poll() is None:
                raise GuestError(f"cannot talk to {self.what}: {e}") from None
        if not line:
            raise GuestError(f"{self.what} died: {self._err.read().strip()[-500:]}")
        try:
            answer: Dict[str, Any] = json.loads(line)
        except ValueError:
            raise GuestError(f"{self.what} answered {line.strip()[:200]!r}") from None
        if "error" in answer:
            raise GuestError(f"{self.what}: {answer['error']}")
        return answer, line

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
