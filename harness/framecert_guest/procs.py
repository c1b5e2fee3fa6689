"""Child processes that never outlive the harness: QEMU and the kernel build's make."""
import ctypes
import os
import signal
import subprocess

PR_SET_PDEATHSIG = 1


def die_with_parent():
    """A Popen preexec_fn: if the harness dies, even by SIGKILL, the kernel sends the child SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def end_process_group(proc: subprocess.Popen, grace: float = 5.0):
    """For a child started with start_new_session=True: waits `grace` seconds for it to exit by itself,
    then SIGTERMs and finally SIGKILLs its whole process group."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()
