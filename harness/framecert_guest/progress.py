"""Progress on stderr (stdout carries the result): a step per line; within a step, a counter that
rewrites itself on a terminal and prints sparsely otherwise (logs, CI)."""
import sys
import time


class Progress:
    def __init__(self, stream=None, quiet=False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._start = time.monotonic()
        self._pending = False  # a counter line is on screen without its newline

    def _elapsed(self) -> str:
        s = int(time.monotonic() - self._start)
        return f"{s // 60}:{s % 60:02d}"

    def step(self, message: str):
        if self.quiet:
            return
        self._end_counter()
        print(f"[{self._elapsed()}] {message}", file=self.stream, flush=True)

    def count(self, label: str, n: int, every: int = 200):
        """Within a step: `n` things done so far (kernel objects compiled, ...)."""
        if self.quiet:
            return
        if self.tty:
            print(f"\r[{self._elapsed()}]   {label}: {n}", end="", file=self.stream, flush=True)
            self._pending = True
        elif n % every == 0:
            print(f"[{self._elapsed()}]   {label}: {n}", file=self.stream, flush=True)

    def _end_counter(self):
        if self._pending:
            print(file=self.stream)
            self._pending = False
