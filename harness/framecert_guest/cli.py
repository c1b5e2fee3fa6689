"""The `framecert-guest` command line.

Each subcommand is one `add_*` function registering its parser and handler, listed in COMMANDS; the options
several commands share are declared once (OPTIONS, `_options`). Exit status: 0 success, 1 failure (failed
build, guest panic, timeout), 2 bad arguments, 130 interrupted. Expected failures print one line, no
traceback.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from . import (attach, crosscheck, known_chains, livepatch, matrix, patch_check, paths, profiles, qemu, report_html,
               stress)
from . import guest_dir as gd
from . import provenance, shards, vmcore
from .build import build, build_from_tree
from .errors import GuestError, UsageError
from .metadata import guest_metadata
from .progress import Progress
from .report import finish_report, format_table
from .truth import ORACLES, uses_cfi, uses_shadow
from .walk import WalkSession


def _text_out(args):
    """Where a command's human text goes: stdout, unless `--json -` keeps stdout for the JSON alone."""
    return sys.stderr if getattr(args, "json", None) == "-" else sys.stdout


def _write_json(report: Dict[str, Any], path: str):
    """--json FILE of every command: the report, indented; '-' is stdout."""
    text = json.dumps(report, indent=1)
    if path == "-":
        print(text)
    else:
        Path(path).write_text(text + "\n")


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


# The options several commands share, declared once: name -> how to add it to a command's parser.
OPTIONS: Dict[str, Callable[[argparse.ArgumentParser], Any]] = {
    "guest-dir": lambda p: p.add_argument(
        "--guest-dir", help="a built guest directory (default: build or take from the cache)"),
    "smp": lambda p: p.add_argument("--smp", type=_int_in(1, qemu.MAX_SMP), default=2, metavar="K",
                                    help="vCPUs (default 2)"),
    "mem": lambda p: p.add_argument("--mem", type=_int_in(128, qemu.MAX_MEM_MB), default=512, metavar="MIB",
                                    help="guest RAM in MiB (default 512)"),
    "timeout": lambda p: p.add_argument("--timeout", type=float, default=300,
                                        help="seconds to wait for the ready marker"),
    "settle": lambda p: p.add_argument("--settle", type=float, default=1.0, metavar="S",
                                       help="seconds of workload before the freeze"),
    "json": lambda p: p.add_argument("--json", metavar="FILE", help="write the report as JSON to FILE ('-': stdout)"),
    "html": lambda p: p.add_argument("--html", metavar="FILE", help="write a page showing the run"),
    "oracle": lambda p: p.add_argument(
        "--oracle", choices=ORACLES, default="shadow",
        help="the independent truth every trace is checked against: shadow (default: the emulator's shadow call "
             "stacks, harness/shadow/), cfi (an unwind from .debug_frame alone, harness/cfi/), all (both) or none"),
}


def _options(p: argparse.ArgumentParser, *names: str):
    for name in names:
        OPTIONS[name](p)


def _guest_dir(args) -> Path:
    """--guest-dir, or the guest for the current sources (built now or taken from the cache)."""
    return Path(args.guest_dir or build(progress=Progress()))


# ---- build ----
def add_build(sub):
    p = sub.add_parser("build", help="build (or find in the cache) the guest; prints its directory last",
                       description="Builds kernel, fctest.ko and initramfs from guest/ and caches them under "
                                   "${XDG_CACHE_HOME:-~/.cache}/framecert/guest-<key>. Prints that directory as "
                                   "the last line of output.")
    p.add_argument("-j", "--jobs", type=_int_in(1, 64), default=2, help="parallel make jobs (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--kernel-tree", type=Path, metavar="DIR",
                   help="a kernel tree you built (vmlinux, vmlinux.o, bzImage, Module.symvers): build only the "
                        "modules and initramfs against it; other commands then take the printed --guest-dir")
    p.set_defaults(func=run_build)


def run_build(args) -> int:
    if args.kernel_tree and (args.kernel or args.cc):
        raise UsageError("--kernel-tree brings its own kernel: no --kernel or --cc with it")
    if args.kernel_tree:
        guest_dir = build_from_tree(args.kernel_tree, jobs=args.jobs, progress=Progress(quiet=args.quiet))
    else:
        guest_dir = build(jobs=args.jobs, progress=Progress(quiet=args.quiet))
    # The kernel's frame metadata (in framecert's metadata cache); it needs the framecert binary, which a
    # developer may not have built yet (then `walk` computes it later).
    if paths.FRAMECERT_BIN.is_file():
        meta = guest_metadata(guest_dir)
        if not args.quiet:
            print(f"metadata: {', '.join(str(p) for p in meta.values())}", file=sys.stderr)
    elif not args.quiet:
        print(f"metadata: not computed ({paths.FRAMECERT_BIN} not built yet)", file=sys.stderr)
    print(guest_dir, flush=True)
    return 0


# ---- metadata ----
def add_metadata(sub):
    p = sub.add_parser("metadata", help="compute the guest kernel's and modules' frame metadata (cached)",
                       description="vmlinux's: vmlinux.o validated and addressed like vmlinux (framecert "
                                   "metadata-cache --from vmlinux=vmlinux.o); each guest module's: its .ko per "
                                   "section. Kept in framecert's metadata cache (the one `framecert walk` uses), "
                                   "keyed by build-id and the framecert binary. Prints the paths.")
    p.set_defaults(func=run_metadata)


def run_metadata(args) -> int:
    for path in guest_metadata(build(jobs=2, progress=Progress(quiet=True))).values():
        print(path)
    return 0


# ---- boot ----
def add_boot(sub):
    p = sub.add_parser("boot", help="boot the guest and keep it running until interrupted",
                       description="Boots the guest under QEMU (TCG), waits for FRAMECERT-GUEST-READY, prints the "
                                   "QMP/gdb/command sockets and the RAM file, and runs until Ctrl-C or SIGTERM.")
    _options(p, "smp", "mem", "guest-dir", "timeout")
    p.add_argument("--append", default="", metavar="ARGS", help="extra kernel command line")
    p.add_argument("--quiet", action="store_true", help="do not echo the guest console")
    p.set_defaults(func=run_boot)


def run_boot(args) -> int:
    guest_dir = _guest_dir(args)
    echo = _ConsoleEcho(enabled=not args.quiet)
    with qemu.Guest(guest_dir, smp=args.smp, mem_mb=args.mem, cmdline_extra=args.append) as guest:
        try:
            ready = guest.wait_ready(timeout=args.timeout, on_poll=echo.update)
        finally:
            echo.update(guest)  # the console up to a panic or timeout explains it
        attach.publish(guest)
        print(f"framecert-guest: ready in {ready:.1f} s (pid {guest.proc.pid}); Ctrl-C stops it\n"
              f"  walk it: scripts/framecert-guest walk --attach {guest.run_dir}\n"
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
    _options(p, "json", "smp", "mem", "guest-dir", "settle", "timeout", "oracle")
    p.add_argument("--frames", type=_frame_count, default=4, metavar="N|all",
                   help="frames shown per task in the table (default 4; all: the whole trace, like crash's bt)")
    p.add_argument("--external", action="store_true",
                   help="cross-check with drgn and crash on a dump of the same frozen state (dump-guest-memory)")
    p.add_argument("--attach", nargs="?", const="", metavar="RUN_DIR",
                   help="walk the guest `framecert-guest boot` keeps running (the only one, or RUN_DIR) instead "
                        "of booting one; it keeps running afterwards")
    p.add_argument("--vmcore", type=Path, metavar="FILE",
                   help="walk a dump of the guest (`framecert-guest dump`, ELF or kdump) instead of a running one")
    p.set_defaults(func=run_walk)


def _frame_count(text):
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'all': {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"at least 1 frame: {text!r}")
    return n


def _attached_or_new_guest(args, shadow: bool = False) -> qemu.Guest:
    """--attach [RUN_DIR]: the guest `framecert-guest boot` keeps running; otherwise a new one (not started yet)."""
    if args.attach is not None:
        return attach.AttachedGuest(attach.find(args.attach))
    return qemu.Guest(_guest_dir(args), smp=args.smp, mem_mb=args.mem, shadow=shadow)


def run_walk(args) -> int:
    if args.vmcore is not None:
        return run_walk_vmcore(args)
    guest = _attached_or_new_guest(args, shadow=uses_shadow(args.oracle))
    guest_dir = guest.guest_dir
    dump: Optional[Path] = None

    def external(report):
        # Same frozen state: dump before resuming.
        nonlocal dump
        dump = Path(tempfile.mkdtemp(prefix="framecert-dump-")) / "vmcore"
        crosscheck.dump_guest(guest, dump)

    with guest:
        if args.attach is None:
            guest.wait_ready(timeout=args.timeout)
        with WalkSession(guest, cfi=uses_cfi(args.oracle)) as session:
            time.sleep(args.settle)
            report = session.walk(while_frozen=external if args.external else None)
    drgn_res = crash_res = None
    try:
        if dump is not None:
            kos = [gd.module_ko(guest_dir, m) for m in gd.built_modules(guest_dir)]
            report.prstatus_pids = crosscheck.fix_prstatus_pids(dump, report.tasks)
            drgn_res = crosscheck.drgn_check(dump, gd.vmlinux(guest_dir), kos, report.tasks)
            crash_res, report.crash_raw = crosscheck.crash_check(dump, gd.vmlinux(guest_dir), report.tasks)
    finally:
        if dump is not None and os.environ.get("FRAMECERT_KEEP_DUMP"):
            print(f"framecert-guest: dump kept in {dump.parent}", file=sys.stderr)
        elif dump is not None:
            shutil.rmtree(dump.parent, ignore_errors=True)
    finish_report(report, drgn_res, crash_res, chains=known_chains.load(guest_dir))
    return _print_walk(report, args)


def _print_walk(report, args) -> int:
    print(format_table(report, frames=args.frames), file=_text_out(args), flush=True)
    if args.json:
        _write_json(report.to_json(), args.json)
    if report.summary.false_reliable:
        print(f"framecert-guest: FALSE RELIABLE: {report.summary.false_reliable} task(s) called reliable "
              "an independent truth contradicts", file=sys.stderr, flush=True)
        return 1
    return 0


def run_walk_vmcore(args) -> int:
    if args.attach is not None or args.external:
        raise UsageError("--vmcore walks a dump: no --attach or --external with it")
    if not args.vmcore.is_file():
        raise UsageError(f"--vmcore {args.vmcore}: no such file")
    guest_dir = _guest_dir(args)
    report = vmcore.walk_vmcore(args.vmcore, guest_dir)
    # The truths a dump still has: fctest's known chains. The shadow stacks and the CFI oracle need the live guest.
    finish_report(report, chains=known_chains.load(guest_dir))
    return _print_walk(report, args)


# ---- dump ----
def add_dump(sub):
    p = sub.add_parser("dump", help="freeze the guest and write a kernel dump of it (for crash, drgn, walk --vmcore)",
                       description="Boots the guest (or attaches to a running one), freezes it, writes its memory "
                                   "and CPU registers to FILE with QMP dump-guest-memory, and resumes it. "
                                   "`framecert-guest walk --vmcore FILE` walks the dump.")
    _options(p, "smp", "mem", "guest-dir", "settle", "timeout")
    p.add_argument("file", type=Path, metavar="FILE", help="the dump to write")
    p.add_argument("--format", choices=sorted(vmcore.FORMATS), default="elf",
                   help="elf (QEMU's ELF core) or kdump (kdump-compressed, as makedumpfile writes; smaller)")
    p.add_argument("--attach", nargs="?", const="", metavar="RUN_DIR",
                   help="dump the guest `framecert-guest boot` keeps running (the only one, or RUN_DIR)")
    p.set_defaults(func=run_dump)


def run_dump(args) -> int:
    if not args.file.parent.resolve().is_dir():
        raise UsageError(f"{args.file}: no such directory {args.file.parent}")
    guest = _attached_or_new_guest(args)
    with guest:
        if args.attach is None:
            guest.wait_ready(timeout=args.timeout)
            time.sleep(args.settle)
        guest.qmp("stop")
        try:
            path = vmcore.dump_vmcore(guest, args.file, args.format)
        finally:
            guest.qmp("cont")
    print(f"framecert-guest: wrote {path} ({path.stat().st_size} bytes, {args.format}); "
          f"walk it: scripts/framecert-guest walk --vmcore {path}")
    return 0


# ---- patch-check ----
def _function_list(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one function name")
    return names


def add_patch_check(sub):
    p = sub.add_parser("patch-check", help="may a live patch of these functions switch each task now?",
                       description="Freezes the guest, walks every task and decides per task as the kernel's "
                                   "klp_try_switch_task() does: may-switch, blocked-on-stack (function, frame) or "
                                   "blocked-unreliable (reason). Running tasks are decided from their frozen vCPU "
                                   "registers (the kernel cannot). --kernel-compare loads the guest's livepatch "
                                   "module fcpatch.ko and sets the decisions beside the kernel's own per-task "
                                   "patch state read from the same frozen memory.")
    p.add_argument("--functions", type=_function_list, metavar="F1,F2,...",
                   help="the patched functions (default with --kernel-compare: fcpatch.ko's)")
    _options(p, "json", "smp", "guest-dir", "settle", "timeout", "oracle")
    p.add_argument("--retry", type=_int_in(0, 1000), default=0, metavar="N",
                   help="resume and re-freeze up to N more times while tasks are blocked (kernel-style retries)")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between retries (default 1)")
    p.add_argument("--kernel-compare", action="store_true",
                   help="load fcpatch.ko and compare with the kernel's livepatch transition")
    p.set_defaults(func=run_patch_check)


def run_patch_check(args) -> int:
    # Argument errors first: on a new machine the guest lookup below may start a kernel build.
    functions = args.functions or (livepatch.PATCHED_FUNCTIONS if args.kernel_compare else None)
    if not functions:
        raise UsageError("give --functions F1,F2,... (or --kernel-compare)")
    if args.kernel_compare and sorted(functions) != sorted(livepatch.PATCHED_FUNCTIONS):
        raise UsageError(f"--kernel-compare patches {','.join(livepatch.PATCHED_FUNCTIONS)} (fcpatch.ko), not "
                         f"{','.join(functions)}")
    guest_dir = _guest_dir(args)
    with qemu.Guest(guest_dir, smp=args.smp, shadow=uses_shadow(args.oracle)) as guest:
        guest.wait_ready(timeout=args.timeout)
        if args.kernel_compare:
            result = livepatch.compare(guest, functions, settle=args.settle, cfi=uses_cfi(args.oracle))
        else:
            with WalkSession(guest, cfi=uses_cfi(args.oracle)) as session:
                patch_check.check_functions_known(session, functions)
                time.sleep(args.settle)
                result = patch_check.run_rounds(
                    session, functions, retries=args.retry, interval=args.interval,
                    progress=lambda a, n, b: print(f"[patch-check] freeze {a}: {n} tasks, {b} blocked",
                                                   file=sys.stderr, flush=True))
    print(patch_check.format_table(result), file=_text_out(args), flush=True)
    if args.kernel_compare:
        print(livepatch.format_comparison(result), file=_text_out(args), flush=True)
    if args.json:
        _write_json(result, args.json)
    return 0


# ---- stress ----
def _shard(text):
    """I/N, or auto[/N] (resolved from the scheduler's environment in run_stress, shards.resolve)."""
    try:
        return shards.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_stress(sub):
    p = sub.add_parser("stress", help="many freezes at random moments under load, every task walked each time",
                       description="Boots the guest, starts a stressing workload, and for each round waits a "
                                   "random time (reproducible from --seed), freezes, walks and cross-checks every "
                                   "task, resumes. Exit status 1 if any trace called reliable was wrong (false "
                                   "reliable) or a round failed.")
    p.add_argument("--rounds", type=_int_in(1, 1000000), required=True, metavar="N")
    p.add_argument("--seed", type=int, default=1, metavar="S")
    _options(p, "smp", "json", "html", "guest-dir", "oracle")
    p.add_argument("--workload", default="storm", metavar="NAME", choices=stress.WORKLOADS,
                   help="storm (default: fork/exec, timers, pipes, file I/O, serial interrupts), boot, or storm "
                        "under a tracer: function, function_graph, function_graph_filtered, kretprobe, "
                        "function_graph_kretprobe (both)")
    p.add_argument("--jobs", type=_int_in(1, 16), default=1, metavar="J", help="guests in parallel")
    p.add_argument("--shard", type=_shard, default=(1, 1), metavar="I/N",
                   help="run only shard I of N (rounds r with r %% N == I-1); merge the reports afterwards. "
                        "auto or auto/N: I (and N) from a Slurm array, a Kubernetes indexed Job or GNU parallel "
                        f"(N from auto/N or {shards.COUNT_VARIABLE} where the scheduler gives none; "
                        "docs/stress-at-scale.md)")
    p.add_argument("--job", type=_job, default=(0, 1), help=argparse.SUPPRESS)  # set by --jobs for its children
    p.set_defaults(func=run_stress)


def _job(text):
    k, j = (int(x) for x in text.split("/"))
    return k, j


def run_stress(args) -> int:
    args.shard = shards.resolve(args.shard)  # --shard auto: a usage error before any guest build
    guest_dir = _guest_dir(args)
    if args.jobs > 1:
        report = _stress_jobs(args, guest_dir)
    else:
        rounds = stress.select_rounds(args.rounds, args.shard, args.job, args.seed)
        report = stress.run(guest_dir, rounds, args.seed, smp=args.smp, workload=args.workload,
                            progress=stress.progress_line, oracle=args.oracle)
    # What the run stands on (framecert build, guest, profile, command) and its piece of the run: the page
    # shows them, merge checks them.
    report["summary"].update(provenance.describe_run(guest_dir, args.rounds, args.shard, args.job, sys.argv))
    return _finish_stress_report(report, args)


def _finish_stress_report(report: dict, args) -> int:
    """stress and merge: the summary, --json, --html; exit 1 on a false reliable or a harness error."""
    print(stress.format_summary(report), file=_text_out(args), flush=True)
    if args.json:
        _write_json(report, args.json)
    if args.html:
        report_html.write(report, args.html)
        print(f"HTML report: {Path(args.html).resolve()}", file=_text_out(args), flush=True)
    s = report["summary"]
    if s["false_reliable"] or s["harness_errors"]:
        print(f"framecert-guest: stress: {s['false_reliable']} false reliable, {s['harness_errors']} harness errors",
              file=sys.stderr, flush=True)
        return 1
    return 0


def _stress_jobs(args, guest_dir) -> dict:
    """--jobs J: J child processes of this command, one guest each, shares of the shard's rounds that wait
    about as long (stress.select_rounds)."""
    tmp = Path(tempfile.mkdtemp(prefix="framecert-stress-"))
    try:
        procs = []
        for k in range(args.jobs):
            out = tmp / f"job{k}.json"
            cmd = [sys.executable, str(paths.REPO / "scripts" / "framecert-guest"), "stress",
                   "--rounds", str(args.rounds), "--seed", str(args.seed), "--smp", str(args.smp),
                   "--workload", args.workload, "--shard", f"{args.shard[0]}/{args.shard[1]}", "--oracle", args.oracle,
                   "--job", f"{k}/{args.jobs}", "--json", str(out), "--guest-dir", str(guest_dir)]
            procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL), out))
        reports = []
        for proc, out in procs:
            proc.wait()
            if not out.is_file():
                raise GuestError(f"stress job {out.stem} failed (exit {proc.returncode})")
            reports.append(json.loads(out.read_text()))
        return stress.merge(reports)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- merge ----
def add_merge(sub):
    p = sub.add_parser("merge", help="combine stress reports of one run's shards",
                       description="Reads stress JSON reports of disjoint rounds of one run (same seed and "
                                   "workload), writes the combined report. Exit status 1 if it has a false "
                                   "reliable or a harness error.")
    p.add_argument("reports", nargs="+", metavar="REPORT.json")
    _options(p, "json", "html")
    p.set_defaults(func=run_merge)


def run_merge(args) -> int:
    reports = []
    for path in args.reports:
        try:
            with open(path) as f:
                reports.append(json.load(f))
        except (OSError, ValueError) as e:
            raise GuestError(f"cannot read {path}: {e}") from None
        stress.check_mergeable(reports[-1], path)
    return _finish_stress_report(stress.merge(reports), args)


# ---- matrix ----
def add_matrix(sub):
    p = sub.add_parser("matrix", help="build and measure every guest profile; one table",
                       description="For each profile (kernel version x compiler): build the guest, compare "
                                   "framecert with that kernel's objtool on every object, walk, patch-check "
                                   "--kernel-compare and a short stress run with the shadow oracle; print one "
                                   "table. Exit 1 on a false reliable or a profile that could not be measured.")
    p.add_argument("--profiles", metavar="P1,P2", help="profiles as KERNEL-CC (default: all: "
                   f"{', '.join(p.name for p in matrix.ALL)})")
    p.add_argument("--rounds", type=_int_in(1, 100000), default=20, help="stress rounds per profile (default 20)")
    p.add_argument("--log", type=Path, default=Path("matrix.log"), help="every command's output (default matrix.log)")
    _options(p, "json")
    p.set_defaults(func=run_matrix)


def run_matrix(args) -> int:
    selected = matrix.parse_profiles(args.profiles)
    rows = matrix.run(selected, args.rounds, args.log)
    print(matrix.table(rows), file=_text_out(args), flush=True)
    if args.json:
        _write_json(matrix.report(args.rounds, rows), args.json)
    return 1 if matrix.failed(rows) else 0


COMMANDS = [add_build, add_metadata, add_boot, add_walk, add_dump, add_patch_check, add_stress, add_merge, add_matrix]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="framecert-guest", description="framecert's guest harness")
    p.add_argument("--version", action="version", version=f"framecert-guest {paths.version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    # Every command that builds or finds a guest takes its profile (merge only reads reports).
    for name, command in sub.choices.items():
        if name not in ("merge", "matrix"):  # merge reads reports; matrix runs every profile
            profiles.add_arguments(command)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    qemu.install_signal_handlers()
    try:
        profiles.select(profiles.parse(getattr(args, "kernel", None), getattr(args, "cc", None)))
        return args.func(args)
    except GuestError as e:
        print(f"framecert-guest: error: {e}", file=sys.stderr, flush=True)
        return 2 if isinstance(e, UsageError) else 1
    except KeyboardInterrupt:
        print("framecert-guest: interrupted", file=sys.stderr, flush=True)
        return 130
