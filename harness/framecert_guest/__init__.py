"""framecert's guest harness: build the guest, boot it under QEMU, freeze it, walk every task with the C++
guest walker, and judge every verdict against independent truths.

Layers, lowest first (a module imports only from its own layer or lower ones; tests/harness/lint.py checks it,
docs/design.md explains it):
  basics          errors (GuestError), paths (inputs, cache, the framecert binary), progress, procs,
                  model (the typed walker config, report, tasks, frames, verdicts; parsed once from JSON)
  guest dir/build guest_dir (a built guest's files and manifest), cache, config_check, kernel_build, initramfs,
                  regress (fcregress.ko's generator), build, metadata (`framecert metadata-cache`)
  launch/talk     qmp, qemu (the Guest launcher), attach, gdbstub, shadow (the shadow-stack client and its
                  verdict), serve (a `framecert ... --serve` process), guest_query (module sections,
                  kallsyms), ram_writer (fault injection)
  walk session    walk (WalkSession: freeze, registers, walk, resume)
  judging         known_chains, truth (the accounting), crosscheck (drgn, crash), report (finish, table)
  commands        patch_check, livepatch, stress, report_html
  command line    cli (`framecert-guest`), api (the same as a library: Guest, walk, patch_check, stress;
                  re-exported by the `framecert` package, harness/framecert)
"""
