"""The import graph: no lower layer imports a higher one (masking, models < data < training < reporting <
scripts; fileio.py is the ground floor) and no script imports another script."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Package -> the project packages and modules it may import (its own included).
ALLOWED = {
    "fileio": {"fileio"},
    "masking": {"masking"},
    "models": {"masking", "models", "fileio"},
    "data": {"masking", "models", "data", "fileio"},
    "training": {"masking", "models", "data", "training", "fileio"},
    "reporting": {"masking", "models", "data", "training", "reporting", "fileio"},
}
LIBRARIES = set(ALLOWED)


def project_modules():
    """{file: the project modules it imports (first name of each import, relative imports resolved)}."""
    files = [path for path in ROOT.glob("*.py")] + [path for folder in (*LIBRARIES, "bench") if (ROOT / folder).is_dir()
                                                   for path in (ROOT / folder).rglob("*.py")]
    scripts = {path.stem for path in ROOT.glob("*.py")} - {"fileio"}
    bench = {path.stem for path in (ROOT / "bench").glob("*.py")}
    found = {}
    for path in files:
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names.add(path.relative_to(ROOT).parts[0] if node.level else node.module.split(".")[0])
                if not node.level and node.module.startswith("bench."):   # bench/ scripts imported as a package
                    names.add(node.module.split(".")[1])
        found[path.relative_to(ROOT)] = names & (LIBRARIES | scripts | bench)
    return found, scripts | bench


def test_no_lower_layer_imports_a_higher_one():
    found, _ = project_modules()
    wrong = [f"{path} imports {sorted(names - ALLOWED[layer])}" for path, names in found.items()
             if (layer := path.parts[0].removesuffix(".py")) in ALLOWED and names - ALLOWED[layer]]
    assert not wrong, wrong


def test_no_script_imports_a_script():
    found, scripts = project_modules()
    wrong = [f"{path} imports {sorted(names & scripts)}" for path, names in found.items()
             if path.parts[0].removesuffix(".py") not in LIBRARIES and names & scripts]
    assert not wrong, wrong


def test_the_graph_sees_the_imports_it_checks():
    found, scripts = project_modules()
    assert {"train", "reproduce", "report", "export", "init_example", "step_time"} <= scripts
    assert found[Path("training/study_run.py")] >= {"training"} and "fileio" in found[Path("training/results.py")]
