"Small helpers shared by the pytest tests (not part of the package)."
import os, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def copy_project(dst:Path, with_data=False) -> Path:
    "Copy what nbdev needs (config, notebooks, package, top-level notebook) to `dst`."
    ign = shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints', '*.egg-info')
    for name in ['settings.ini', 'setup.py', 'pyproject.toml', 'index.ipynb', 'README.md']:
        if (ROOT/name).exists(): shutil.copy2(ROOT/name, dst/name)
    for name in ['nbs', 'semcorr_nb', 'tools'] + (['data'] if with_data else []):
        if (ROOT/name).exists(): shutil.copytree(ROOT/name, dst/name, ignore=ign)
    return dst

def tree_bytes(folder:Path, pattern='*') -> dict:
    "Map relative path -> bytes for every file below `folder` matching `pattern` (caches skipped)."
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob(pattern))
            if p.is_file() and '__pycache__' not in p.parts and '.ipynb_checkpoints' not in p.parts}

def run(cmd, cwd=ROOT, env=None, timeout=600, check=True):
    "Run a command, returning CompletedProcess; on failure show its output in the assertion."
    e = {**os.environ, 'NO_ALBUMENTATIONS_UPDATE': '1', 'MPLBACKEND': 'Agg', **(env or {})}
    r = subprocess.run(cmd, cwd=cwd, env=e, timeout=timeout, capture_output=True, text=True)
    if check: assert r.returncode == 0, f"{' '.join(map(str, cmd))} exited {r.returncode}\n--- stdout\n{r.stdout[-8000:]}\n--- stderr\n{r.stderr[-8000:]}"
    return r

PY = sys.executable
