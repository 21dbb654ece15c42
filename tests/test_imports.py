"""What stays light: one subprocess checks every "does not import X" promise of the package at once.

- the evaluation package and `streamvis evaluate` (through the CLI) pull in neither torch, nor
  matplotlib, nor scipy, and the fast loaders never import numpy.ma;
- data/masks.py, data/ytvis.py and data/categories.py do not import torch;
- viz/ imports matplotlib only inside its plotting function (draw.plot_per_class_ap).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASE = REPO / "tests" / "data" / "ytvis_eval" / "case_001"

CHECK = f"""
import sys

def heavy(*names):
    return [name for name in names if name in sys.modules]

import streamvis.data.masks, streamvis.data.ytvis, streamvis.categories
assert not heavy("torch"), ("data.masks/ytvis/categories", heavy("torch"))
import streamvis.viz
assert not heavy("matplotlib", "torch"), ("viz", heavy("matplotlib", "torch"))
import streamvis.evaluation, streamvis.evaluation.ytvis_eval, streamvis.cli
assert not heavy("torch", "matplotlib", "scipy"), ("evaluation, cli", heavy("torch", "matplotlib", "scipy"))
rc = streamvis.cli.main(["evaluate", "--gt", {str(CASE / "gt.json")!r},
                         "--results", {str(CASE / "results.json")!r}])
assert rc == 0, rc
found = heavy("torch", "matplotlib", "scipy", "numpy.ma")
assert not found, ("streamvis evaluate", found)
print("light")
"""


def test_light_modules_stay_light():
    proc = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("light")
