"""The README's "The layers in your own model" snippet runs as printed (so it cannot drift)."""
import re
from pathlib import Path

import numpy as np
from conftest import real_data_dir

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## The layers in your own model"


def readme_snippet():
    """The first ```python block of the section."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    blocks = re.findall(r"```python\n(.*?)```", text[start:end if end != -1 else None], flags=re.DOTALL)
    assert blocks, f"no ```python block under {SECTION!r} in README.md"
    return blocks[0]


def test_readme_layers_snippet_trains_saves_and_reloads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("mnist.npz")))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(readme_snippet(), "README.md snippet", "exec"), namespace)

    from masking import masked_layers, remaining_percent
    model, reloaded = namespace["model"], namespace["reloaded"]
    assert (tmp_path / "my_signed_model.keras").is_file()
    assert [type(layer).__name__ for layer in masked_layers(reloaded)] == \
        ["SignedSupermaskConv2D", "SignedSupermaskDense", "SignedSupermaskDense"]
    before, after = re.findall(r"remaining[^\d]*([\d.]+) %", capsys.readouterr().out)
    assert 55 < float(before) < 65           # p = 0.4 on uniform scores keeps about 60 %
    assert float(after) < float(before)      # weight decay on the scores hides weights
    assert remaining_percent(reloaded) == remaining_percent(model)
    for original, loaded in zip(masked_layers(model), masked_layers(reloaded)):
        np.testing.assert_array_equal(original.ternary_mask(), loaded.ternary_mask())
    assert namespace["accuracy"] > 0.5       # far above chance (10 %) after 3 epochs on 2048 images
