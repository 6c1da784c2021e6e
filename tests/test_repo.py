"The repository is in the state CI demands: package generated from notebooks, notebooks clean, README in step."
import re, shutil
from pathlib import Path
from helpers import ROOT, copy_project, tree_bytes, run

def test_layout():
    for name in ['settings.ini', 'README.md', 'index.ipynb', 'nbs', 'semcorr_nb', 'tests', 'data/README.md',
                 '.ci/run', 'LICENSE', 'CONTRIBUTING.md']:
        assert (ROOT/name).exists(), f'{name} is missing from the top level'

def test_export_is_a_noop(tmp_path):
    "Running nbdev_export on the committed notebooks must reproduce semcorr_nb/ byte for byte."
    copy_project(tmp_path)
    shutil.rmtree(tmp_path/'semcorr_nb')
    run(['nbdev_export'], cwd=tmp_path)
    want, got = tree_bytes(ROOT/'semcorr_nb', '*.py'), tree_bytes(tmp_path/'semcorr_nb', '*.py')
    assert set(got) == set(want), f'modules differ: only in repo {sorted(set(want)-set(got))}, only from export {sorted(set(got)-set(want))} (a stale module of a renamed notebook?)'
    changed = [k for k in want if want[k] != got[k]]
    assert not changed, f'nbdev_export changes {changed}: run nbdev_export and commit the package'

def test_notebooks_are_clean(tmp_path):
    "nbdev_clean must leave every notebook (nbs/ and index.ipynb) unchanged."
    copy_project(tmp_path)
    run(['nbdev_clean'], cwd=tmp_path)
    run(['nbdev_clean', '--fname', 'index.ipynb'], cwd=tmp_path)
    want = {**tree_bytes(ROOT/'nbs', '*.ipynb'), 'index.ipynb': (ROOT/'index.ipynb').read_bytes()}
    got = {**tree_bytes(tmp_path/'nbs', '*.ipynb'), 'index.ipynb': (tmp_path/'index.ipynb').read_bytes()}
    dirty = [k for k in want if want[k] != got.get(k)]
    assert not dirty, f'not clean: {dirty}; run `nbdev_clean && nbdev_clean --fname index.ipynb` and commit'

def test_every_notebook_exports_a_module():
    "One idea per notebook, one module each: every numbered notebook names its module."
    import json
    for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        src = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', src, re.M)
        assert m, f'{nb.name} has no `#| default_exp` cell'
        assert (ROOT/'semcorr_nb'/(m.group(1).replace('.', '/') + '.py')).exists(), f'{nb.name}: module {m.group(1)} not generated'

def test_readme_matches_index():
    "README.md is generated from index.ipynb (quarto is not available here): `python tools/readme.py`."
    run(['python', 'tools/readme.py', '--check'])

def test_ci_runs_the_readme_test_command():
    readme = (ROOT/'README.md').read_text()
    m = re.search(r'<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```', readme, re.S)
    assert m, 'README.md must mark its test command with <!-- test-command -->'
    cmd = m.group(1).strip()
    ci = (ROOT/'.ci/run').read_text().strip().splitlines()
    assert ci[-1].strip() == cmd, f'.ci/run must end with the README test command {cmd!r}, ends with {ci[-1]!r}'
