"""framecert's guest harness: build the guest kernel + initramfs + test module, and boot it under QEMU.

Layout (one concept per module):
  errors.py        GuestError, the one exception type for expected failures (printed as one line)
  paths.py         where the project's inputs and the cache live
  cache.py         the cache key over every build input, and atomic publication of a build
  config_check.py  the final .config must really have frame pointers, objtool, DWARF, livepatch, ...
  kernel_build.py  extract, configure and build the kernel; build fctest.ko against it
  initramfs.py     fcload (static C) and the gzip'd cpio made with the kernel's own gen_init_cpio
  build.py         the whole `build` step, cached
  progress.py      progress lines on stderr (stdout carries results)
  procs.py         child processes that die with the harness, process-group termination
  qmp.py           a small QMP client
  qemu.py          the Guest launcher (start, wait_ready, qmp, command, stop; a context manager)
  cli.py           the `framecert-guest` command line
"""
