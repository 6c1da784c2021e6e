"index.ipynb (the landing page) runs top to bottom in a real Jupyter kernel, as a reader in JupyterLab would run it."
import json, shutil
from helpers import ROOT, run, PY

def test_index_runs_in_a_kernel(tmp_path):
    nb = json.loads((ROOT/'index.ipynb').read_text())
    for c in nb['cells']:   # nbval refuses stored outputs of cleaned notebooks; run an output-free copy
        if c['cell_type'] == 'code': c['outputs'], c['execution_count'] = [], None
    (tmp_path/'index.ipynb').write_text(json.dumps(nb))
    run([PY, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--nbval-lax', '--nbval-current-env', 'index.ipynb'],
        cwd=tmp_path, timeout=600)
