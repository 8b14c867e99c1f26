"""The README's Python API block runs as written (against the shared data, in a temporary folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import DATA_ROOT, REPO_ROOT


def _python_block(title: str) -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_api_block_runs(tmp_path):
    if not (DATA_ROOT / "dicom_radiographs").is_dir():
        pytest.skip(f"shared data not found at {DATA_ROOT}")
    code = _python_block("Python API (notebooks)")
    code = code.replace('Path("../shared/data")', f"Path({str(DATA_ROOT)!r})")
    script = tmp_path / "first_session.py"
    script.write_text(code)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RADLOOP_DATABASE_URL", None)
    env.pop("RADLOOP_WORKSPACE", None)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    added, duplicates, errors = (int(value) for value in lines[0].split())
    twins = all((DATA_ROOT / "dicom_radiographs" / f"RG3_{name}.dcm").is_file() for name in ("J2KR", "UNCR"))
    assert added >= 1 and errors == 0 and duplicates == int(twins)  # RG3 lossless J2K = uncompressed pixels
    assert any(line.startswith("fracture positive radius right") for line in lines), lines
    assert (tmp_path / "notebook-workspace" / "catalog.sqlite").is_file()
    neighbours = [line for line in lines if line.startswith("[[")]
    assert neighbours and neighbours[0].startswith("[['I-")
    picks = eval(lines[-1])  # noqa: S307 - our own printout of a list of ids
    assert len(picks) == 2 and all(pick.startswith("I-") for pick in picks)


def test_the_readme_configs_section_says_where_a_relative_config_path_is_looked_up():
    """`--config` falls back to radloop's own configs/ (core.config.find_config): the Configs section says so."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = " ".join(readme.split("## Configs", 1)[1].split("\n## ", 1)[0].split())
    assert "`--config PATH` is read relative to the current folder first" in section
    assert "looked up in radloop's own `configs/`" in section and "a local file of that name wins" in section
    assert "Absolute paths are never looked up elsewhere" in section
