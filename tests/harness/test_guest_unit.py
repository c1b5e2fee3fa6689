"""Unit tests of the guest harness's pure-Python parts: no VM, no kernel build."""
import io
import json
import re
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import REPO
from framecert_guest import cache, config_check, kernel_build, metadata, paths, qemu
from framecert_guest.errors import GuestError
from framecert_guest.kernel_build import write_chains_header
from framecert_guest.qmp import QmpClient, QmpError

CLI = REPO / "scripts" / "framecert-guest"


# ---- cache key ----
def _files(tmp_path, **contents):
    out = {}
    for name, text in contents.items():
        p = tmp_path / name
        p.write_text(text)
        out[name] = p
    return out


def test_key_is_stable_and_order_independent(tmp_path):
    files = _files(tmp_path, a="one", b="two")
    facts = {"gcc": "12", "kernel-package": "6.1.192-2"}
    reordered = dict(reversed(list(files.items())))
    assert cache.compute_key(files, facts) == cache.compute_key(reordered, dict(reversed(list(facts.items()))))


def test_key_changes_with_any_input(tmp_path):
    files = _files(tmp_path, a="one", b="two")
    facts = {"kernel-package": "6.1.192-2"}
    key = cache.compute_key(files, facts)
    assert cache.compute_key(files, {"kernel-package": "6.1.193-1"}) != key
    (tmp_path / "b").write_text("two!")
    assert cache.compute_key(files, facts) != key
    # Moving content from one file to another is a different input too.
    assert cache.compute_key(_files(tmp_path, a="onet", b="wo"), facts) != cache.compute_key(
        _files(tmp_path, a="one", b="two"), facts)


def test_key_ignores_build_debris(tmp_path):
    (tmp_path / "fctest_main.c").write_text("x")
    before = cache.source_files([tmp_path])
    for debris in ("fctest.o", "fctest.ko", ".fctest.o.cmd", "Module.symvers", "modules.order"):
        (tmp_path / debris).write_text("junk")
    assert cache.source_files([tmp_path]) == before


def test_real_key_covers_every_guest_source():
    names = set(cache.source_files(cache.paths.GUEST_LAYER_SRC, [cache.paths.REGRESS_GENERATOR]))
    for expected in ("module/fctest_main.c", "module/fctest_asm.S", "module/Kbuild", "module/expected-chains.json",
                     "initramfs/init", "initramfs/fcload.c", "regress/variants.json", "livepatch/fcpatch.c",
                     "livepatch/Kbuild"):
        assert f"guest/{expected}" in names
    assert "harness/framecert_guest/regress.py" in names
    # Names relative to the repository: a clone elsewhere has the same keys (and shares the cache).
    assert not any(n.startswith("/") for n in names)


def test_kernel_key_depends_on_the_config_alone_and_the_guest_key_on_the_kernel_key(monkeypatch, tmp_path):
    frag = tmp_path / "framecert.config"
    frag.write_text("CONFIG_X=y\n")
    monkeypatch.setattr(cache.paths, "CONFIG_FRAGMENT", frag)
    monkeypatch.setattr(cache, "kernel_facts", lambda: {"recipe": "t"})
    module = tmp_path / "module"
    module.mkdir()
    (module / "a.c").write_text("1")
    monkeypatch.setattr(cache.paths, "GUEST_LAYER_SRC", (module,))
    monkeypatch.setattr(cache, "file_digest", lambda p: "busybox")
    k1, g1 = cache.kernel_key(), cache.guest_key()
    (module / "a.c").write_text("2")  # a module change: same kernel, another guest
    k2, g2 = cache.kernel_key(), cache.guest_key()
    assert k1 == k2 and g1 != g2
    frag.write_text("CONFIG_X=n\n")  # a config change: another kernel, so another guest
    assert cache.kernel_key() != k2 and cache.guest_key() != g2


def test_build_slot_removes_unpublished_work(tmp_path):
    with cache.BuildSlot(tmp_path, "k") as slot:
        slot.tmp.mkdir()
        (slot.tmp / "half-built").write_text("x")
    assert not slot.tmp.exists() and not slot.final.exists()
    with cache.BuildSlot(tmp_path, "k") as slot:
        slot.tmp.mkdir()
        slot.publish()
    assert slot.final.is_dir() and slot.done()


# ---- config checking ----
GOOD = "\n".join(f"{name}=y" for name, (want, _) in config_check.REQUIRED.items() if want == "y")
GOOD += "\n# CONFIG_UNWINDER_ORC is not set\n"


def test_good_config_passes():
    assert config_check.problems(GOOD) == []


def test_missing_or_wrong_options_are_named():
    bad = GOOD.replace("CONFIG_FRAME_POINTER=y", "# CONFIG_FRAME_POINTER is not set")
    bad = bad.replace("CONFIG_LIVEPATCH=y\n", "")
    bad = bad.replace("# CONFIG_UNWINDER_ORC is not set", "CONFIG_UNWINDER_ORC=y")
    found = " ".join(config_check.problems(bad))
    assert "CONFIG_FRAME_POINTER is unset" in found
    assert "CONFIG_LIVEPATCH is unset" in found
    assert "CONFIG_UNWINDER_ORC=y but must be off" in found
    assert len(config_check.problems(bad)) == 3


def test_require_raises_one_line_naming_the_source():
    with pytest.raises(GuestError) as e:
        config_check.require(GOOD.replace("CONFIG_DEBUG_INFO=y", "CONFIG_DEBUG_INFO=n"), "tinyconfig + frag")
    assert str(e.value).startswith("tinyconfig + frag gave an unusable kernel config")
    assert "CONFIG_DEBUG_INFO is n, must be y" in str(e.value) and "\n" not in str(e.value)
    config_check.require(GOOD, "tinyconfig + frag")


# ---- QMP framing against a fake QEMU ----
def _fake_qemu(script):
    """A socketpair whose far end runs `script(file_reader, sock)` in a thread."""
    ours, theirs = socket.socketpair()

    def serve():
        with theirs, theirs.makefile("rb") as reader:
            script(reader, theirs)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return ours, t


def test_qmp_negotiates_then_skips_events_and_split_messages():
    seen = []

    def script(reader, sock):
        sock.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
        seen.append(json.loads(reader.readline()))
        sock.sendall(b'{"return": {}, "id": 1}\r\n')
        seen.append(json.loads(reader.readline()))
        # An event first, then the reply cut in the middle of a JSON object.
        sock.sendall(b'{"event": "STOP", "timestamp": {}}\r\n{"return": {"status": "pau')
        sock.sendall(b'sed", "running": false}, "id": 2}\r\n')

    ours, t = _fake_qemu(script)
    client = QmpClient(ours, timeout=5)
    client.handshake()
    assert client.execute("query-status") == {"status": "paused", "running": False}
    t.join(5)
    assert seen[0] == {"execute": "qmp_capabilities", "id": 1}
    assert seen[1] == {"execute": "query-status", "id": 2}
    assert [e["event"] for e in client.events] == ["STOP"]


def test_qmp_error_reply_and_closed_connection():
    def script(reader, sock):
        sock.sendall(b'{"QMP": {}}\n')
        reader.readline()
        sock.sendall(b'{"return": {}, "id": 1}\n')
        reader.readline()
        sock.sendall(b'{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"},'
                     b' "id": 2}\n')
        reader.readline()  # then hang up

    ours, t = _fake_qemu(script)
    client = QmpClient(ours, timeout=5)
    client.handshake()
    with pytest.raises(QmpError, match="CommandNotFound"):
        client.execute("nope")
    with pytest.raises(QmpError, match="closed"):
        client.execute("query-status")


def test_qmp_rejects_a_non_qmp_greeting():
    ours, _ = _fake_qemu(lambda reader, sock: sock.sendall(b'{"hello": 1}\n'))
    with pytest.raises(QmpError, match="greeting"):
        QmpClient(ours, timeout=5).handshake()


def test_qmp_connect_to_missing_socket_fails_cleanly(tmp_path):
    with pytest.raises(QmpError, match="cannot connect"):
        QmpClient.connect(str(tmp_path / "nothing.sock"), timeout=0.2)


# ---- the module's compiled-in chains ----
def test_chains_header_is_c_that_reproduces_the_json(tmp_path):
    src = REPO / "guest" / "module" / "expected-chains.json"
    write_chains_header(src, tmp_path / "fctest_chains.h")
    (tmp_path / "t.c").write_text('#include <stdio.h>\n#include "fctest_chains.h"\n'
                                  "int main(void) { fputs(fctest_chains_json, stdout); return 0; }\n")
    subprocess.run(["gcc", "-Wall", "-Werror", "-o", tmp_path / "t", tmp_path / "t.c"], check=True)
    out = subprocess.run([tmp_path / "t"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == json.loads(src.read_text())


def test_expected_chains_name_every_kthread():
    chains = json.loads((REPO / "guest" / "module" / "expected-chains.json").read_text())
    assert chains["order"] == "outermost-first"
    assert set(chains["kthreads"]) == {"fc_chain", "fc_asm_framed", "fc_asm_noframe", "fc_nonstd", "fc_spin"}
    for name, k in chains["kthreads"].items():
        assert k["chain"][:2] == ["ret_from_fork", "kthread"], name
        assert k["verdict"] in ("reliable", "unreliable"), name


# ---- launcher hygiene ----
def test_sweep_removes_only_orphans(tmp_path, monkeypatch):
    monkeypatch.setattr(qemu, "SHM_DIR", tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = tmp_path / f"{qemu.SHM_PREFIX}{dead.pid}-abcd"
    mine = tmp_path / f"{qemu.SHM_PREFIX}{os.getpid()}-abcd"
    other = tmp_path / "framecert-something-else"
    for p in (orphan, mine, other):
        p.write_text("")
    qemu.sweep_orphans()
    assert not orphan.exists() and mine.exists() and other.exists()


def test_guest_rejects_bad_sizes(tmp_path):
    with pytest.raises(GuestError, match="--mem"):
        qemu.Guest(tmp_path, mem_mb=4096)
    with pytest.raises(GuestError, match="--smp"):
        qemu.Guest(tmp_path, smp=0)
    with pytest.raises(GuestError, match="not a built guest"):
        qemu.Guest(tmp_path)


def test_guest_rejects_bad_handed_files(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(GuestError, match="cannot hand"):
        qemu.Guest(tmp_path, files={"a/b": tmp_path / "manifest.json"})
    with pytest.raises(GuestError, match="cannot hand"):
        qemu.Guest(tmp_path, files={"x.ko": tmp_path / "missing.ko"})
    g = qemu.Guest(tmp_path, files={"x.ko": tmp_path / "manifest.json"})
    g.run_dir, g.ram_path = tmp_path, tmp_path / "ram"  # as start() would set them
    assert f"name=opt/framecert/x.ko,file={tmp_path / 'manifest.json'}" in g.qemu_args()


# ---- the command line ----
@pytest.mark.parametrize("args", [["boot", "--smp", "99"], ["boot", "--mem", "lots"], ["frobnicate"], []])
def test_cli_bad_arguments_exit_2_without_traceback(args):
    r = subprocess.run([CLI, *args], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error" in r.stderr


# Issue 17: argument errors are found before the guest lookup, which on a new machine builds a kernel: with an
# empty cache the command must stop at once, exit 2, and leave the cache untouched.
@pytest.mark.parametrize("args", [["stress", "--rounds", "1", "--workload", "foo"], ["patch-check"],
                                  ["patch-check", "--kernel-compare", "--functions", "not_fcpatch"]])
def test_cli_argument_errors_come_before_any_build(args, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "error" in r.stderr
    assert not (tmp_path / "cache").exists(), "the guest cache was looked into before the arguments were checked"


def test_cli_version_names_the_version_and_commit():
    r = subprocess.run([CLI, "--version"], capture_output=True, text=True)
    assert r.returncode == 0
    version = re.search(r"project\(framecert VERSION (\S+)", (paths.REPO / "CMakeLists.txt").read_text()).group(1)
    commit = r"(?:[0-9a-f]{7,}(?:-dirty)?|unknown)"
    assert re.fullmatch(rf"framecert-guest {re.escape(version)} \(commit {commit}\)\n", r.stdout), r.stdout


def test_cli_boot_of_a_non_guest_dir_is_one_line(tmp_path):
    r = subprocess.run([CLI, "boot", "--guest-dir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.startswith("framecert-guest: error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---- running build commands ----
class _Log(io.StringIO):
    name = "build.log"


def test_failed_command_names_its_first_error_line():
    script = 'echo "  CC kernel/errseq.o"; echo "x.c:1:2: error: boom"; echo "make: *** Error 2"; exit 2'
    with pytest.raises(GuestError) as e:
        kernel_build.run(["sh", "-c", script], "/", _Log())
    assert "x.c:1:2: error: boom" in str(e.value)


def test_command_output_is_logged_and_returned():
    log = _Log()
    assert kernel_build.run(["sh", "-c", "echo one; echo two >&2"], "/", log) == ["one", "two"]
    assert "one\ntwo\n" in log.getvalue()


# ---- the guest's metadata: the same cache and keys as `framecert walk` ----
@pytest.mark.skipif(not paths.FRAMECERT_BIN.is_file(), reason="framecert not built")
def test_metadata_comes_from_the_cache_walk_uses(tmp_path, monkeypatch):
    obj = "/usr/bin/true"  # an executable with a build-id
    monkeypatch.setenv(metadata.CACHE_DIR_ENV, str(tmp_path))
    first = subprocess.run([str(paths.FRAMECERT_BIN), "metadata-cache", "--cache-dir", str(tmp_path), obj],
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    entry = json.loads(first.stdout)["objects"][0]
    # Keyed the C++ way: build-id and the binary's producer tag; computed once, then read from the cache.
    assert entry["computed"] and entry["key"].startswith("bid-") and Path(entry["metadata"]).parent == tmp_path
    assert metadata.cache_images([Path(obj)]) == {Path(obj): Path(entry["metadata"])}
    again = json.loads(subprocess.run([str(paths.FRAMECERT_BIN), "metadata-cache", "--cache-dir", str(tmp_path), obj],
                                      capture_output=True, text=True).stdout)["objects"][0]
    assert not again["computed"] and again["metadata"] == entry["metadata"]
    with pytest.raises(GuestError, match="nonexistent.*No such file"):
        metadata.cache_images([tmp_path / "nonexistent"])
