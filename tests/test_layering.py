"""Who may import whom (read from the source, nothing is imported): the seams of issue 9 stay closed.

- no command imports another command (shared arguments live in commands/arguments.py, drawing in viz/);
- data/ does not import viz/ (the synthetic preview is drawn by the library's viz, called by `synth`);
- models/ does not import data/ (the input contract is ops/image.py);
- no test or library module loads a benchmark script by path.
"""

from __future__ import annotations

import ast
from pathlib import Path

from streamvis.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "streamvis"


def imported_modules(path: Path) -> set[str]:
    """Every module name `path` imports (``import a.b`` and ``from a.b import c`` -> a.b, a.b.c)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offenders(folder: Path, forbidden) -> dict[str, list[str]]:
    found = {}
    for path in sorted(folder.rglob("*.py")):
        bad = sorted(name for name in imported_modules(path) if forbidden(path, name))
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


def test_no_command_imports_another():
    commands = {f"streamvis.commands.{module}" for module, _ in COMMANDS.values()}
    assert offenders(PACKAGE / "commands", lambda path, name: name in commands and
                     name != f"streamvis.commands.{path.stem}") == {}


def test_data_does_not_import_viz_and_models_do_not_import_data():
    assert offenders(PACKAGE / "data", lambda path, name: name.startswith("streamvis.viz")) == {}
    assert offenders(PACKAGE / "models", lambda path, name: name.startswith("streamvis.data")) == {}


def test_nothing_loads_benchmark_scripts_by_path():
    files = [p for folder in (REPO / "src", REPO / "tests") for p in folder.rglob("*.py")]
    uses = [str(p.relative_to(REPO)) for p in files if p.name != "test_layering.py"
            and "spec_from_file_location" in p.read_text(encoding="utf-8")
            and "benchmarks" in p.read_text(encoding="utf-8")]
    assert uses == [], "move what they test into the library"


def test_the_readme_layout_names_existing_files():
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):readme.index("## License")]
    names = set(re.findall(r"[\w/]+\.py", layout))
    missing = [name for name in sorted(names) if not (PACKAGE / name).exists()
               and not any(PACKAGE.rglob(Path(name).name))]
    assert missing == []
    for path in re.findall(r"`((?:models|tracking|evaluation)/[\w/]+\.py)`", layout):
        assert (PACKAGE / path).is_file(), path
