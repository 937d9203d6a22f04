"""A non-editable install carries every subpackage and asset, and `actionrec predict` runs from it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_every_module_and_asset_and_predicts(tmp_path, realclips, i3d_kinetics):
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)]
    if importlib.util.find_spec("setuptools") is not None:
        build.insert(5, "--no-build-isolation")  # no download when the build backend is already here
    subprocess.run(build, check=True, capture_output=True, text=True)
    (wheel,) = (tmp_path / "dist").glob("actionrec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "actionrec"
    expected = {p.relative_to(ROOT).as_posix() for p in package.rglob("*") if p.is_file()
                and p.suffix != ".pyc" and "__pycache__" not in p.parts}
    assert expected and not expected - names, sorted(expected - names)
    assert "actionrec/assets/kinetics400_labels.txt" in names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable checkout on sys.path
    where = subprocess.run([sys.executable, "-c", "import actionrec; print(actionrec.__file__)"], env=env,
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(site)
    out = subprocess.run([sys.executable, "-m", "actionrec", "predict", str(realclips / "archery.avi"), "--json", "--top", "1"],
                         env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["top"][0]["label"] == "archery"
