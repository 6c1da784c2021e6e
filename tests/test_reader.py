"""What a reader sees, opening `nbs/` in JupyterLab or on GitHub, or running it top to bottom (issue 16).

- notebooks are committed with the outputs a reader should see (figures, tables, printed values), each
  within a budget, without stderr, progress bars or this machine's timings (`tools/refresh_outputs.py`);

- the text points at nothing the reader lacks (`specs/`), and plot cells show their pictures in the docs;
- tests use one idiom (fastcore.test) and methods added later are `@patch`ed;
- "Run All" works without a GPU: every `#| gpu` cell skips itself with a one-line note;
- notebooks pin torch threads under `nbdev_test` by themselves;
- nbdev's own doc processing (what `nbdev_docs` / `nbdev_readme` run before quarto) runs clean, its
  generated files are ignored and `settings.ini` names a placeholder account.
"""
import json, os, re, subprocess, sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from helpers import ROOT, run, PY

sys.path.insert(0, str(ROOT/'tools'))
import refresh_outputs

NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))   # nbdev skips _*.ipynb

def cells(path, kind='code'):
    return [c for c in json.loads(Path(path).read_text())['cells'] if c['cell_type'] == kind]

def src(c): return ''.join(c['source'])

def directives(s): return {l[3:].strip().split(':')[0].split()[0] for l in s.splitlines() if l.startswith('#|') and l[3:].strip()}

def exported(s): return bool(directives(s) & {'export', 'exporti', 'exports'})

# --- 1. committed outputs ---------------------------------------------------------------------------

def test_stored_outputs_within_budget():
    sizes = {p.name: refresh_outputs.output_bytes(p) for p in NBS + [ROOT/'index.ipynb']}
    over = {k: v for k, v in sizes.items() if v > refresh_outputs.BUDGET}
    assert not over, f"stored outputs over {refresh_outputs.BUDGET:,} bytes: {over}; lower the figures' dpi or size"

def test_stored_outputs_are_what_a_reader_should_see():
    bad = []
    for p in NBS + [ROOT/'index.ipynb']:
        for c in cells(p):
            for o in c.get('outputs', []):
                if o['output_type'] == 'error': bad.append(f'{p.name}: an error output')
                if o['output_type'] == 'stream':
                    t = ''.join(o['text'])
                    if o['name'] == 'stderr': bad.append(f'{p.name}: stderr output {t[:60]!r}')
                    for l in re.findall(r'[^\n]*\n|[^\n]+$', t):
                        if '\r' in l.rstrip('\n') or refresh_outputs.is_timing(l): bad.append(f'{p.name}: {l[:80]!r}')
    assert not bad, 'refresh these notebooks with tools/refresh_outputs.py:\n' + '\n'.join(bad)

def test_refresh_outputs_keeps_what_a_reader_should_see(tmp_path):
    "tools/refresh_outputs.py runs a notebook in a Jupyter kernel and keeps figures and results, not noise."
    nb = dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')),
              cells=[dict(cell_type='code', id=f'c{i}', metadata={}, execution_count=None, outputs=[], source=s) for i, s in enumerate([
                  'import sys, warnings, matplotlib.pyplot as plt\nfrom semcorr_nb.core import has_gpu',
                  "print('shape (2, 3)'); print('took 1.25 s'); print('training at 86 pairs/s'); print('10%|#\\r50%|#####', end='')",
                  "warnings.warn('noise'); print('to stderr', file=sys.stderr); 6 * 7",
                  "#| gpu\nif has_gpu(): print('gpu')",
                  "fig, ax = plt.subplots(figsize=(2, 1.5)); ax.plot([0, 1]); plt.show()"])])
    p = tmp_path/'t.ipynb'
    p.write_text(json.dumps(nb))
    r = run([PY, str(ROOT/'tools'/'refresh_outputs.py'), str(p)], timeout=300)
    got = json.loads(p.read_text())['cells']
    texts = [''.join(o.get('text', '')) for c in got for o in c['outputs'] if o['output_type'] == 'stream']
    import torch
    assert texts == ['shape (2, 3)\n', 'No GPU here: this `#| gpu` cell is skipped (it runs under `nbdev_test --flags gpu` on a CUDA machine).\n'] \
        or torch.cuda.is_available(), texts
    assert ''.join(got[2]['outputs'][-1]['data']['text/plain']) == '42'
    assert 'image/png' in got[4]['outputs'][0]['data'] and all(c['execution_count'] is None for c in got)
    assert 'dropped: took 1.25 s' in r.stdout and 'stored outputs' in r.stdout

# --- 3. the text ------------------------------------------------------------------------------------

def test_text_points_at_nothing_the_reader_lacks():
    "`specs/` is not in the repository: cite the paper or the official code instead."
    bad = [p.name for p in NBS if re.search(r"specs/|\bthe spec\b|\bspec §|spec's|\bpitfall \d", p.read_text())]
    assert not bad, f'`specs/` or "the spec" referenced in {bad}'

def test_plot_cells_are_not_hidden():
    "`#| hide` hides a cell's output from the docs too; a plot cell hides only its code (`#| echo: false`)."
    bad = [f'{p.name}: {src(c).splitlines()[1][:60]!r}' for p in NBS for c in cells(p)
           if 'hide' in directives(src(c)) and re.search(r'plt\.|\.imshow\(|\bshow_\w+\(', src(c))]
    assert not bad, 'plot cells marked `#| hide` (use `#| echo: false`):\n' + '\n'.join(bad)

# --- 4. one test idiom ------------------------------------------------------------------------------

IDIOM = [(re.compile(r'; raise AssertionError'), 'try: ...; raise AssertionError / except: use test_fail'),
         (re.compile(r'assert torch\.(allclose|isclose)\('), 'assert torch.allclose: use test_close'),
         (re.compile(r'assert torch\.equal\('), 'assert torch.equal: use test_eq'),
         (re.compile(r'torch\.testing\.assert_close\('), 'torch.testing.assert_close: use test_close'),
         (re.compile(r'^(def test_close|test_close\s*=)', re.M), 'a local test_close: use fastcore.test')]
PATCHED = re.compile(r'^[A-Z]\w*\.\w+(\s*,\s*[A-Z]\w*\.\w+)*\s*=\s*_?[a-z_]\w*(\s*,\s*_?[a-z_]\w*)*\s*$', re.M)

def test_one_test_idiom():
    "fastcore.test throughout; a method added to a class after its definition is `@patch`ed, not assigned."
    bad = []
    for p in NBS:
        for c in cells(p):
            s = src(c)
            if PATCHED.search(s): bad.append(f'{p.name}: a method assigned by hand, use @patch: {PATCHED.search(s)[0][:60]!r}')
            if exported(s): continue
            bad += [f'{p.name}: {why}' for rx, why in IDIOM if rx.search(s)]
    assert not bad, '\n'.join(sorted(set(bad)))

def test_patched_methods_are_where_readers_look():
    from semcorr_nb.pck import PCKMeter
    for m in ['summary', 'per_category', 'per_difficulty', 'table', 'results', 'to_json', 'to_csv']:
        assert getattr(PCKMeter, m).__qualname__ == f'PCKMeter.{m}', m
    assert repr(PCKMeter(alphas=0.1)).startswith('PCK')

def test_exported_cells_are_steps_a_reader_can_follow():
    "Long exported cells were split into steps each followed by a test (`fit` was one 190-line cell)."
    sizes = {(p.name, src(c).splitlines()[1][:50]): len(src(c).splitlines()) for p in NBS for c in cells(p) if exported(src(c))}
    long = {k: n for k, n in sizes.items() if n > 70}
    assert not long, f'exported cells over 70 lines; split them into steps, each followed by a test: {long}'
    n = sorted(sizes.values())
    assert n[len(n) // 2] <= 25, f'median exported cell {n[len(n) // 2]} lines'
    assert sum(v > 40 for v in n) <= 25, 'more exported cells over 40 lines than when they were split'

# --- 5. Run All without a GPU -----------------------------------------------------------------------

def test_gpu_cells_skip_themselves_without_a_gpu(monkeypatch):
    """Every `#| gpu` cell starts with `if has_gpu():`, so a reader's Run All (or `jupyter nbconvert
    --execute`) on a CPU goes past it with a note. Proved cheaply: each gpu cell runs here with CUDA
    reported absent, and must finish and print the note."""
    import torch
    from semcorr_nb.core import has_gpu
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    bad, n = [], 0
    for p in NBS:
        code = cells(p)
        for i, c in enumerate(code):
            s = src(c)
            if 'gpu' not in directives(s): continue
            n += 1
            before = '\n'.join(src(o) for o in code[:i])
            if not re.search(r'(import [^\n]*\bhas_gpu\b|def has_gpu\()', before):
                bad.append(f'{p.name}: has_gpu is not imported before its #| gpu cell')
            out = StringIO()
            try:
                with redirect_stdout(out): exec(compile(s, f'{p.name}[gpu]', 'exec'), {'has_gpu': has_gpu, 'torch': torch})
            except Exception as e: bad.append(f'{p.name}: a #| gpu cell fails without a GPU: {e!r}'[:200])
            else:
                if out.getvalue().strip().splitlines() != ['No GPU here: this `#| gpu` cell is skipped (it runs under `nbdev_test --flags gpu` on a CUDA machine).']:
                    bad.append(f'{p.name}: a #| gpu cell ran without saying, in one line, that it skipped: {out.getvalue()[:100]!r}')
    assert n >= 8 and not bad, '\n'.join(bad)

def test_run_all_in_a_kernel_without_a_gpu(tmp_path, monkeypatch):
    """03_pck's Run All stopped at its `#| gpu` cell on a CPU ("Found no NVIDIA driver"), and the exported
    cell, table and figure after it never ran. Run it top to bottom in a real Jupyter kernel (nbclient,
    as `jupyter nbconvert --execute` does) with CUDA hidden: every cell runs, the gpu cell says it skipped."""
    import nbformat
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    nb = refresh_outputs.execute(ROOT/'nbs'/'03_pck.ipynb', timeout=600)
    code = [c for c in nb.cells if c.cell_type == 'code']
    gpu = [c for c in code if 'gpu' in directives(c.source)]
    assert gpu and all(any('No GPU here' in o.get('text', '') for o in c.outputs) for c in gpu)
    after = code[code.index(gpu[-1]) + 1:]
    assert after and all(c.execution_count for c in after), 'cells after the gpu cell did not run'
    assert any('image/png' in o.get('data', {}) for c in code for o in c.outputs)

def test_has_gpu_says_so_once():
    from semcorr_nb.core import has_gpu
    import torch
    out = StringIO()
    with redirect_stdout(out): got = has_gpu()
    assert got == torch.cuda.is_available()
    assert len(out.getvalue().splitlines()) == (0 if got else 1)

def test_notebooks_pin_torch_threads_under_nbdev_test():
    "nbdev_test sets IN_TEST; core then gives each notebook process its share of the cores."
    code = 'import torch, semcorr_nb.core as c; print(torch.get_num_threads(), c.threads_under_test())'
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')}
    r = subprocess.run([PY, '-c', code], env={**env, 'IN_TEST': '1'}, capture_output=True, text=True, cwd=ROOT, timeout=120)
    got, want = r.stdout.split()
    assert got == want, r.stderr

# --- 6. nbdev's own commands ------------------------------------------------------------------------

def test_nbdev_doc_processing_runs_clean():
    """The notebook processors that `nbdev_docs` / `nbdev_readme` / `nbdev_preview` run before quarto
    (`nbdev.serve.proc_nbs` -> `FilterDefaults`; quarto itself is not needed) execute each notebook's
    import cells, exported cells and show_doc cells alone, so a cell that mixes an import with code
    that needs an earlier cell breaks the docs; nbdev warns about every such cell."""
    code = r"""
import sys, warnings, json
from execnb.nbio import read_nb
from nbdev.processors import FilterDefaults
res = {}
for p in sys.argv[1:]:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        try: FilterDefaults()(read_nb(p)); err = None
        except Exception as e: err = repr(e)[:400]
    mixed = [str(x.message).split('---')[1].strip()[:80] for x in w if 'imports and other code' in str(x.message)]
    res[p] = dict(err=err, mixed=mixed)
print(json.dumps(res))"""
    nbs = NBS + [ROOT/'index.ipynb']
    r = run([PY, '-c', code] + [str(p) for p in nbs], env={'IN_TEST': '1', 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}, timeout=600)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    errors = [f'{Path(p).name}: {v["err"]}' for p, v in res.items() if v['err']]
    mixed = [f'{Path(p).name}: {m!r}' for p, v in res.items() for m in v['mixed']]
    assert not errors, 'nbdev doc processing fails:\n' + '\n'.join(errors)
    assert not mixed, 'cells mixing imports with other code (keep imports in their own cells):\n' + '\n'.join(mixed)

def test_nbdev_generated_files_are_ignored():
    ignored = run(['git', 'check-ignore', 'nbs/_quarto.yml', 'nbs/nbdev.yml', '_proc/x', '_docs/x'], check=False).stdout.split()
    assert ignored == ['nbs/_quarto.yml', 'nbs/nbdev.yml', '_proc/x', '_docs/x'], ignored

def test_settings_name_a_placeholder_repository():
    "Docs and source links point at https://github.com/<user>/semcorr_nb: a placeholder that reads as one."
    from configparser import ConfigParser
    cfg = ConfigParser(); cfg.read(ROOT/'settings.ini')
    user = cfg['DEFAULT']['user']
    assert 'your' in user.lower(), f'settings.ini user = {user}'
    assert cfg['DEFAULT']['git_url'] == f'https://github.com/{user}/semcorr_nb'
