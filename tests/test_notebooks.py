"""Every notebook in nbs/ runs top to bottom under `nbdev_test` (the notebooks' own cells are the main tests).

`nbdev_test` honours the `#| slow` / `#| gpu` flags listed in settings.ini's `tst_flags`; to run them
too: `NB_FLAGS="slow" pytest tests/test_notebooks.py`. Two workers, one thread each, is the fastest
split on a 2-core machine (torch's own threads would otherwise fight each other).
"""
import os, time
from helpers import ROOT, run

def test_nbdev_test():
    flags = os.environ.get('NB_FLAGS', '')
    workers = os.environ.get('NB_WORKERS', str(min(os.cpu_count() or 1, 2)))
    cmd = ['nbdev_test', '--n_workers', workers, '--timing', '--do_print'] + (['--flags', flags] if flags else [])
    threads = os.environ.get('NB_THREADS', '1')
    t0 = time.time()
    r = run(cmd, env={'OMP_NUM_THREADS': threads, 'MKL_NUM_THREADS': threads, 'IN_TEST': '1'}, timeout=3600, check=False)
    print(r.stdout[-6000:], r.stderr[-6000:], f'\nnbdev_test took {time.time()-t0:.0f} s', sep='\n')
    assert r.returncode == 0, f'nbdev_test failed:\n{r.stdout[-12000:]}\n{r.stderr[-12000:]}'
