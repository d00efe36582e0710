"""The README's Python example runs as written, and help(mrfrecon) documents the public API."""

import pydoc
import re
from pathlib import Path

import numpy as np
import pytest

import mrfrecon

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.usefixtures("one_torch_thread")
def test_readme_python_example_runs_as_written():
    text = README.read_text()
    section = text[text.index("## Python API"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    exec(compile(block, str(README), "exec"), ns)  # noqa: S102  (the README's own code)
    assert float(ns["maps"]["t1h2o"]) == pytest.approx(1200.0) and float(ns["maps"]["ff"]) == pytest.approx(0.2, abs=1e-3)
    assert ns["series"].shape == (1, 175, 48, 48) and ns["series"].dtype == np.complex64


def test_help_documents_the_public_api():
    doc = pydoc.render_doc(mrfrecon, renderer=pydoc.plaintext)
    for name in mrfrecon.__all__:
        if name != "__version__":
            assert name in doc, name
            assert getattr(mrfrecon, name) is not None


def test_every_shipped_checkpoint_the_docs_name_is_shipped():
    """An example that names ``shipped:<name>`` must name a checkpoint of the manifest (the docs once
    said ``shipped:proposed`` while the package ships ``study-proposed``)."""
    from mrfrecon.shipped import shipped_checkpoints

    root = README.parent
    known = set(shipped_checkpoints())
    files = [README, *sorted((root / "docs").glob("*.md")), *sorted((root / "src" / "mrfrecon").rglob("*.py"))]
    named = {(f.name, m) for f in files for m in re.findall(r"shipped:([A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9])", f.read_text())}
    assert named, "the docs name no shipped checkpoint at all"
    assert not {(f, m) for f, m in named if m not in known and m != m.upper()}  # NAME: a placeholder
