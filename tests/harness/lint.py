"""Lint of the Python harness, run by CTest (harness.lint, label unit) with Debian's interpreter:

1. flake8 (python3-flake8) on harness/framecert_guest and tests/harness, as setup.cfg's [flake8] says
   (max line length 120, as the C++);
2. mypy (python3-mypy) on the package, as setup.cfg's [mypy] says (check_untyped_defs: every function body
   is checked, annotated or not);
3. the package's layering (docs/design.md, "The Python harness"): every module sits in one layer of LAYERS
   and imports only from its own layer or lower ones, and no imports go round in a cycle.

Exit 0 when all three pass; otherwise every finding is printed and the exit status is 1."""
import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "harness" / "framecert_guest"
FLAKE8_PATHS = [PACKAGE, REPO / "harness" / "framecert", REPO / "tests" / "harness"]

# Lowest first. A module may import from its own layer and the ones before it, never from a later one.
LAYERS = [
    ("basics", {"__init__", "errors", "paths", "progress", "procs", "model", "shards", "svg_plot", "profiles"}),
    ("guest directory and build", {"guest_dir", "cache", "config_check", "kernel_build", "initramfs", "regress",
                                   "build", "metadata"}),
    ("launch and talk to a guest", {"qmp", "qemu", "attach", "gdbstub", "shadow", "serve", "guest_query",
                                    "ram_writer"}),
    ("walk session", {"walk", "vmcore"}),
    ("judging a walk", {"known_chains", "truth", "crosscheck", "report", "provenance"}),
    ("commands", {"patch_check", "livepatch", "stress", "report_html", "matrix"}),
    ("command line and API", {"cli", "api"}),
]


def package_imports(path: Path) -> set:
    """The package's modules `path` imports (relative imports: `from . import x`, `from .x import y`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("framecert_guest."):
            found.add(node.module.split(".")[1])
    return found


def check_layers() -> list:
    layer_of = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}
    graph = {p.stem: package_imports(p) for p in sorted(PACKAGE.glob("*.py"))}
    problems = [f"{m}.py: in no layer (add it to LAYERS in {Path(__file__).name} and to docs/design.md)"
                for m in graph if m not in layer_of]
    for m, deps in graph.items():
        for d in sorted(deps):
            if m in layer_of and d in layer_of and layer_of[d] > layer_of[m]:
                problems.append(f"{m}.py ({LAYERS[layer_of[m]][0]}) imports {d} ({LAYERS[layer_of[d]][0]}): "
                                "a lower layer must not import a higher one")
    # Cycles (within a layer too): depth-first search.
    state: dict = {}

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                problems.append("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            elif d in graph and d not in state:
                visit(d, stack + [d])
        state[m] = "done"
    for m in graph:
        if m not in state:
            visit(m, [m])
    return problems


def run(name, cmd) -> bool:
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0 and ("No module named" in r.stderr and cmd[2] in r.stderr):
        print(f"lint: {name} is not installed (scripts/setup installs python3-{name})")
        return False
    out = (r.stdout + r.stderr).strip()
    print(f"lint: {name}: {'clean' if r.returncode == 0 else 'FAILED'}" + (f"\n{out}" if out and r.returncode else ""))
    return r.returncode == 0


def main() -> int:
    ok = run("flake8", [sys.executable, "-m", "flake8", *map(str, FLAKE8_PATHS)])
    ok = run("mypy", [sys.executable, "-m", "mypy", "--config-file", str(REPO / "setup.cfg")]) and ok
    problems = check_layers()
    print("lint: layers: " + ("clean" if not problems else "FAILED\n" + "\n".join(problems)))
    return 0 if ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
