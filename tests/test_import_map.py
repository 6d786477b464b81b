"""The package map holds: no import cycles between cidstream's modules, no import of a higher layer from a
lower one, and the runtime never imports training. Every import counts, also those inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cidstream"

# Lower layers never import higher ones; a layer may import its own and any lower one.
LAYERS = [
    {"cidstream", "cidstream.errors", "cidstream.config", "cidstream.ffmpeg_options", "cidstream.user_cache",
     "cidstream.cpu_runtime"},
    {"cidstream.ops"},
    {"cidstream.frames"},
    {"cidstream.io", "cidstream.models"},
    {"cidstream.engine", "cidstream.detect"},
    {"cidstream.sinks"},
    {"cidstream.pipeline"},
    {"cidstream.evaluation", "cidstream.live", "cidstream.jobs", "cidstream.run_input", "cidstream.bench",
     "cidstream.summary", "cidstream.export", "cidstream.cli_config"},
    {"cidstream.cli", "cidstream.__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, source: str | None = None) -> set[str]:
    """cidstream modules (or packages) that the file imports, resolved to absolute names (``source``: its text,
    read from ``path`` when not given)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8") if source is None else source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in ("cidstream", "training")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] not in ("cidstream", "training"):
                continue
            for alias in node.names:  # "from pkg import module" imports the module
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    found.discard(name)
    return found


def _exists(module: str) -> bool:
    path = ROOT / module.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> int:
    best = None
    for rank, names in enumerate(LAYERS):
        for prefix in names:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_import_map.py: add it where it belongs")
    return best[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def _without_package_inits(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ re-exports its modules; an import of the package by one of its own modules
    is an import of those modules, so the edge goes to them instead (else every re-export is a cycle)."""
    packages = {m for m in edges if (ROOT / m.replace(".", "/") / "__init__.py").is_file()}
    out = {}
    for m, targets in edges.items():
        resolved = set()
        for t in targets:
            if t in packages and m.startswith(t + "."):
                resolved |= {x for x in edges[t] if x.startswith(t + ".") and x != m}
            else:
                resolved.add(t)
        out[m] = resolved
    return out


def test_no_import_cycles():
    found = cycles(_without_package_inits(graph()))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_upward_imports():
    wrong = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
             for m, targets in graph().items() for t in targets
             if t.startswith("cidstream") and layer_of(t) > layer_of(m)]
    assert not wrong, "upward imports:\n" + "\n".join(sorted(wrong))


def test_runtime_never_imports_training():
    wrong = [f"{m} imports {t}" for m, targets in graph().items() for t in targets if t.startswith("training")]
    assert not wrong, "\n".join(wrong)


def test_the_scan_sees_imports_inside_functions(tmp_path):
    """The scanner must count a lazy import; else a cycle hidden in a function passes."""
    lazy = "def f():\n    from ..engine import dehazer\n    import cidstream.sinks.media\n"
    assert imports_of(PACKAGE / "io" / "lazy.py", lazy) == {"cidstream.engine.dehazer", "cidstream.sinks.media"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("word", ["batch", "live", "report", "outputs", "process", "engines", "sources"])
def test_one_meaning_per_module_name(word):
    """A word names one module or package: two files of one name in different packages read alike."""
    roots = (PACKAGE, ROOT / "training")
    stems = [p for r in roots for p in r.rglob(f"{word}.py")] + [p for r in roots for p in r.rglob(word) if p.is_dir()]
    assert len(stems) <= 1, f"{word}: {[str(p.relative_to(ROOT)) for p in stems]}"


def test_a_run_without_detection_does_not_load_the_detector_libraries():
    """torchvision and Ultralytics take seconds to import: a plain dehazing run (run, batch, live, the
    pipeline loop) must not pay for them."""
    import subprocess
    import sys

    code = ("import sys, cidstream.run_input, cidstream.pipeline, cidstream.live.hub, cidstream.jobs.worker; "
            "print(sorted(m for m in ('torchvision', 'ultralytics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _code_files():
    """Every Python file of the runtime, training and the benchmarks, with its text."""
    for root in (PACKAGE, ROOT / "training", ROOT / "benchmarks"):
        for path in sorted(root.rglob("*.py")):
            yield path, path.read_text(encoding="utf-8")


def test_only_engine_device_asks_whether_cuda_is_there():
    """One device resolver: auto, the batch engines, training and the benchmarks all ask engine/device.py."""
    home = PACKAGE / "engine" / "device.py"
    wrong = [str(p.relative_to(ROOT)) for p, text in _code_files() if "cuda.is_available(" in text and p != home]
    assert not wrong, f"cuda.is_available outside engine/device.py: {wrong}"
    assert "cuda.is_available(" in home.read_text()


def test_the_ap_confidence_is_written_once():
    """The detector confidence AP is measured at is config.AP_CONF, not a literal repeated in each caller."""
    import re

    literal = re.compile(r"(conf\w*\s*=\s*0\.001\b|conf\w*\s*=.*,\s*0\.001\s*$|CONF\s*=\s*0\.001\b)", re.M)
    code = lambda text: "\n".join(line.split("#")[0] for line in text.splitlines())  # noqa: E731
    wrong = [str(p.relative_to(ROOT)) for p, text in _code_files()
             if p != PACKAGE / "config.py" and literal.search(code(text))]
    assert not wrong, f"a literal 0.001 detector confidence outside config.py: {wrong}"
    assert literal.search(code((PACKAGE / "config.py").read_text()))


AV_MODULES = {"av", "av.container"}  # av.open is av.container.open


def av_opens(source: str) -> list[int]:
    """Lines that use PyAV's ``open``: ``av.open``, also through ``import av as X``, ``av.container.open``,
    and names bound by ``from av import open``."""
    tree = ast.parse(source)
    modules, openers = {}, set()  # local name -> the av module it is; local names of av's open
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in AV_MODULES:
                    modules[a.asname or "av"] = a.name if a.asname else "av"
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module in AV_MODULES:
            for a in node.names:
                if f"{node.module}.{a.name}" in AV_MODULES:
                    modules[a.asname or a.name] = f"{node.module}.{a.name}"
                elif a.name == "open":
                    openers.add(a.asname or a.name)

    def module_of(node) -> str | None:
        if isinstance(node, ast.Name):
            return modules.get(node.id)
        if isinstance(node, ast.Attribute):
            base = module_of(node.value)
            return base and f"{base}.{node.attr}"
        return None

    return sorted(node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and node.attr == "open" and module_of(node.value) in AV_MODULES
                  or isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in openers)


def test_only_io_opens_media_with_pyav():
    """io/ is the one place that opens media (issue 39): elsewhere io.containers and io.probe do it."""
    io = PACKAGE / "io"
    wrong = [f"{p.relative_to(ROOT)}:{line}" for p, text in _code_files() if io not in p.parents
             for line in av_opens(text)]
    assert not wrong, "av.open outside cidstream/io/ (use an io function): " + ", ".join(wrong)
    assert any(av_opens(text) for p, text in _code_files() if io in p.parents)


def test_the_av_open_scan_sees_aliases():
    """The scan must catch every spelling of PyAV's open, and nothing else, or the test above passes vacuously."""
    source = ("import av\nimport av as pyav\nfrom av import open as av_open\nfrom av import container\n"
              "av.open('a')\npyav.open('b')\nav_open('c')\ncontainer.open('d')\nav.container.open('e')\n"
              "opener = av.open\nav.error.FFmpegError\nopen('f')\nPath('g').open()\n")
    assert av_opens(source) == [5, 6, 7, 8, 9, 10]
    assert av_opens("def f():\n    from av import open\n    return open('x')\n") == [3]
