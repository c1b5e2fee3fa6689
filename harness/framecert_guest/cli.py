"""The `framecert-guest` command line.

Each subcommand is one `add_*` function registering its parser and handler; later ones (walk,
patch-check, stress, merge) join COMMANDS the same way. Exit status: 0 success, 1 failure (failed build,
guest panic, timeout), 2 bad arguments, 130 interrupted. Expected failures print one line, no traceback.
"""
import argparse
import os
import sys
import time

from . import qemu
from .build import build
from .errors import GuestError
from .progress import Progress


def _int_in(lo, hi):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, not {value}")
        return value
    return parse


# ---- build ----
def add_build(sub):
    p = sub.add_parser("build", help="build (or find in the cache) the guest; prints its directory last",
                       description="Builds kernel, fctest.ko and initramfs from guest/ and caches them under "
                                   "${XDG_CACHE_HOME:-~/.cache}/framecert/guest-<key>. Prints that directory as "
                                   "the last line of output.")
    p.add_argument("-j", "--jobs", type=_int_in(1, 64), default=2, help="parallel make jobs (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run_build)


def run_build(args) -> int:
    guest_dir = build(jobs=args.jobs, progress=Progress(quiet=args.quiet))
    # The kernel's frame metadata lives beside the build; it needs the framecert binary, which a
    # developer may not have built yet (then `walk` computes it later).
    from .walk import FRAMECERT_BIN, guest_metadata
    if FRAMECERT_BIN.is_file():
        meta = guest_metadata(guest_dir)
        if not args.quiet:
            print(f"metadata: {', '.join(str(p) for p in meta.values())}", file=sys.stderr)
    elif not args.quiet:
        print(f"metadata: not computed ({FRAMECERT_BIN} not built yet)", file=sys.stderr)
    print(guest_dir, flush=True)
    return 0


# ---- metadata ----
def add_metadata(sub):
    p = sub.add_parser("metadata", help="write the guest kernel's frame metadata into <guest>/metadata/",
                       description="vmlinux.fcmeta: vmlinux.o validated and addressed like vmlinux "
                                   "(framecert check --link-addresses); fctest.fcmeta: the test module per "
                                   "section. Remade whenever the framecert binary changes. Prints the paths.")
    p.set_defaults(func=run_metadata)


def run_metadata(args) -> int:
    from .walk import guest_metadata
    for path in guest_metadata(build(jobs=2, progress=Progress(quiet=True))).values():
        print(path)
    return 0


# ---- boot ----
def add_boot(sub):
    p = sub.add_parser("boot", help="boot the guest and keep it running until interrupted",
                       description="Boots the guest under QEMU (TCG), waits for FRAMECERT-GUEST-READY, prints the "
                                   "QMP/gdb/command sockets and the RAM file, and runs until Ctrl-C or SIGTERM.")
    p.add_argument("--smp", type=_int_in(1, qemu.MAX_SMP), default=2, help="vCPUs (default 2)")
    p.add_argument("--mem", type=_int_in(128, qemu.MAX_MEM_MB), default=512, metavar="MIB",
                   help="guest RAM in MiB (default 512)")
    p.add_argument("--guest-dir", help="a built guest directory (default: build or take from the cache)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the ready marker")
    p.add_argument("--append", default="", metavar="ARGS", help="extra kernel command line")
    p.add_argument("--quiet", action="store_true", help="do not echo the guest console")
    p.set_defaults(func=run_boot)


def run_boot(args) -> int:
    guest_dir = args.guest_dir or build(progress=Progress())
    echo = _ConsoleEcho(enabled=not args.quiet)
    with qemu.Guest(guest_dir, smp=args.smp, mem_mb=args.mem, cmdline_extra=args.append) as guest:
        try:
            ready = guest.wait_ready(timeout=args.timeout, on_poll=echo.update)
        finally:
            echo.update(guest)  # the console up to a panic or timeout explains it
        print(f"framecert-guest: ready in {ready:.1f} s (pid {guest.proc.pid}); Ctrl-C stops it\n"
              f"  QMP      {guest.qmp_socket}\n  gdbstub  {guest.gdb_socket}\n"
              f"  commands {guest.cmd_socket}  (one line per command, e.g. 'tasks'; output on the console)\n"
              f"  RAM      {guest.ram_path}\n  console  {guest.serial_log}", file=sys.stderr, flush=True)
        try:
            while True:
                echo.update(guest)
                guest.check_alive()
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("framecert-guest: stopping", file=sys.stderr, flush=True)
    return 0


class _ConsoleEcho:
    """Copies what the guest prints on its console to our stdout as it arrives."""

    def __init__(self, enabled: bool):
        self.enabled, self.offset = enabled, 0

    def update(self, guest):
        if not self.enabled:
            return
        text = guest.serial_text()
        if len(text) > self.offset:
            sys.stdout.write(text[self.offset:])
            sys.stdout.flush()
            self.offset = len(text)


# ---- walk ----
def add_walk(sub):
    p = sub.add_parser("walk", help="freeze the guest, walk and judge every task, resume, report",
                       description="Boots the guest, lets the workload run, freezes it (QMP stop), walks every task "
                                   "with the C++ guest walker (framecert guest-walk), resumes (QMP cont) and prints a "
                                   "table. Exit status: 0 walked, 1 a false reliable (or a failure), 2 bad arguments.")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE ('-': stdout)")
    p.add_argument("--external", action="store_true",
                   help="cross-check with drgn and crash on a dump of the same frozen state (dump-guest-memory)")
    p.add_argument("--smp", type=_int_in(1, qemu.MAX_SMP), default=2, help="vCPUs (default 2)")
    p.add_argument("--mem", type=_int_in(128, qemu.MAX_MEM_MB), default=512, metavar="MIB", help="guest RAM (MiB)")
    p.add_argument("--guest-dir", help="a built guest directory (default: build or take from the cache)")
    p.add_argument("--settle", type=float, default=1.0, metavar="S", help="seconds of workload before the freeze")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the ready marker")
    p.set_defaults(func=run_walk)


def run_walk(args) -> int:
    import json
    from pathlib import Path
    from . import crosscheck, walk
    guest_dir = Path(args.guest_dir or build(progress=Progress()))
    with qemu.Guest(guest_dir, smp=args.smp, mem_mb=args.mem) as guest:
        guest.wait_ready(timeout=args.timeout)
        with walk.WalkSession(guest) as session:
            time.sleep(args.settle)
            dump_dir = None
            holder = {}

            def external(report):
                # Same frozen state: dump before resuming.
                import tempfile
                nonlocal dump_dir
                dump_dir = tempfile.mkdtemp(prefix="framecert-dump-")
                holder["dump"] = Path(dump_dir) / "vmcore"
                crosscheck.dump_guest(guest, holder["dump"])

            report = session.walk(while_frozen=external if args.external else None)
    drgn_res = crash_res = None
    try:
        if args.external:
            ko = guest_dir / "module" / "fctest.ko"
            report["prstatus_pids"] = crosscheck.fix_prstatus_pids(holder["dump"], report["tasks"])
            drgn_res = crosscheck.drgn_check(holder["dump"], guest_dir / "linux" / "vmlinux", ko, report["tasks"])
            crash_res = crosscheck.crash_check(holder["dump"], guest_dir / "linux" / "vmlinux", report["tasks"])
            report["crash_raw"] = crash_res.pop("_raw", None)
    finally:
        if dump_dir and os.environ.get("FRAMECERT_KEEP_DUMP"):
            print(f"framecert-guest: dump kept in {dump_dir}", file=sys.stderr)
        elif dump_dir:
            import shutil
            shutil.rmtree(dump_dir, ignore_errors=True)
    walk.finish_report(report, drgn_res, crash_res)
    print(walk.format_table(report), flush=True)
    if args.json:
        text = json.dumps(report, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    if report["summary"]["false_reliable"]:
        print(f"framecert-guest: FALSE RELIABLE: {report['summary']['false_reliable']} task(s) called reliable "
              "disagree with an independent walker", file=sys.stderr, flush=True)
        return 1
    return 0


COMMANDS = [add_build, add_metadata, add_boot, add_walk]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="framecert-guest", description="framecert's guest harness")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    qemu.install_signal_handlers()
    try:
        return args.func(args)
    except GuestError as e:
        print(f"framecert-guest: error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("framecert-guest: interrupted", file=sys.stderr, flush=True)
        return 130
