#!/usr/bin/env python3
"""Run notebooks top to bottom in a real Jupyter kernel and store the outputs a reader should see.

    python tools/refresh_outputs.py nbs/03_pck.ipynb [nbs/09_cats.ipynb ...]
    python tools/refresh_outputs.py --check nbs/*.ipynb      # report stored output sizes only

Each notebook runs as a reader's "Run All" does (every cell, `#| slow` ones included; `#| gpu` cells
skip themselves without a GPU), in its own folder, with the inline matplotlib backend at a modest
resolution. Then what a reader should not see is removed from the outputs:

- stderr (warnings, progress bars) and widget outputs;
- stdout lines that carry a progress bar (`\\r`) or a machine-specific timing (`12.3 s`, `450 ms`,
  `86 pairs/s`): a notebook should print the measurement, not how long this machine took;
- `[source](...#LNone)` in `show_doc` output becomes the symbol's real line (nbdev 2.4 writes `None`);

PNG figures are re-encoded losslessly (optimised) when that is smaller, and the notebook is cleaned
with `nbdev_clean` (which keeps outputs: it only drops execution counts and metadata). The stored
output size of each notebook is printed; `tests/test_reader.py` holds every notebook to
`BUDGET` bytes.
"""
import argparse, base64, io, os, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 1_000_000   # bytes of stored output per notebook (figures included)

SETUP = """%config InlineBackend.figure_formats = ['png']
%config InlineBackend.rc = {'figure.dpi': 72, 'savefig.dpi': 'figure'}"""

_TIMING = re.compile(r'(?<![\w.])\d+(?:[.,]\d+)?\s?(?:ms|µs|us|ns|s|sec|secs|seconds|min|minutes)\b(?!\w)'
                     r'|\d\s?(?:it|pairs|steps|samples|images|img|tokens|batches)/s\b')

def is_timing(line:str) -> bool:
    "A line that reports how long something took on this machine."
    return bool(_TIMING.search(line))

def clean_stream(text:str) -> tuple[str, list]:
    "stdout text without progress-bar and timing lines; also returns the dropped lines."
    keep, dropped = [], []
    for line in re.findall(r'[^\n]*\n|[^\n]+$', text):          # lines end at \n only: a bar redraws with \r
        if '\r' in line.rstrip('\n') or is_timing(line): dropped.append(line.rstrip('\n'))
        else: keep.append(line)
    return ''.join(keep), dropped

_LNONE = re.compile(r'\[source\]\((?P<url>[^)]*?/blob/[^/)]+/(?P<py>[^)#]+\.py))#LNone\)(?P<rest>.*?\n\n#+ (?P<sym>[\w.]+))', re.S)

def fix_source_lines(md:str) -> str:
    "show_doc's `#LNone` source anchors, replaced by the line the symbol is defined on."
    from nbdev.doclinks import _get_exps
    def sub(m):
        line = _get_exps(m['py']).get(m['sym'])
        return f"[source]({m['url']}{'#L' + str(line) if line else ''}){m['rest']}"
    return _LNONE.sub(sub, md)

def shrink_png(b64:str) -> str:
    "The PNG losslessly re-encoded (optimised) when that is smaller."
    from PIL import Image
    raw = base64.b64decode(b64)
    buf = io.BytesIO()
    Image.open(io.BytesIO(raw)).save(buf, format='PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() < len(raw) else b64

def clean_outputs(nb) -> list:
    "Strip what a reader should not see from every code cell's outputs, in place; returns the dropped stdout lines."
    dropped = []
    for cell in nb.cells:
        if cell.cell_type != 'code': continue
        outs = []
        for o in cell.get('outputs', []):
            if o.output_type == 'stream':
                if o.name != 'stdout': continue
                o.text, d = clean_stream(o.text)
                dropped += d
                if not o.text: continue
            elif o.output_type in ('display_data', 'execute_result'):
                data = o.get('data', {})
                data.pop('application/vnd.jupyter.widget-view+json', None)
                if not data: continue
                if 'image/png' in data: data['image/png'] = shrink_png(data['image/png'])
                if 'text/markdown' in data: data['text/markdown'] = fix_source_lines(data['text/markdown'])
            outs.append(o)
        cell.outputs = outs
    return dropped

def output_bytes(path) -> int:
    "Bytes of stored outputs in a notebook (the JSON of every output)."
    import json
    nb = json.loads(Path(path).read_text())
    return sum(len(json.dumps(o)) for c in nb['cells'] for o in c.get('outputs', []))

def execute(path:Path, timeout=None):
    "Run `path` top to bottom in a fresh python3 kernel; the executed notebook."
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    setup = nbformat.v4.new_code_cell(SETUP)
    nb.cells.insert(0, setup)
    n = len(nb.cells)
    env = {k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}   # the kernel draws inline
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    env.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')
    env.pop('IN_TEST', None)
    t0 = time.time()
    def start(cell, cell_index, **kw):
        if cell.cell_type == 'code': print(f'\r  cell {cell_index}/{n - 1}  {time.time() - t0:5.0f} s', end='', flush=True)
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', allow_errors=False,
                            resources={'metadata': {'path': str(path.parent)}}, on_cell_start=start)
    client.execute(env=env)
    print(f'\r  {n - 1} cells in {time.time() - t0:.0f} s' + ' ' * 20)
    nb.cells.remove(setup)
    return nb

def refresh(path:Path, timeout=None):
    import nbformat
    from nbdev.clean import nbdev_clean
    print(path)
    nb = execute(path, timeout)
    dropped = clean_outputs(nb)
    for l in dropped: print(f'  dropped: {l.strip()[:120]}')
    nbformat.write(nb, path)
    nbdev_clean(fname=str(path))
    size = output_bytes(path)
    print(f'  stored outputs: {size / 1e3:.0f} kB' + ('  OVER BUDGET' if size > BUDGET else ''))
    return size

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--timeout', type=int, default=None, help='seconds per cell (default: none)')
    ap.add_argument('--check', action='store_true', help='only report the stored output size of each notebook')
    a = ap.parse_args()
    os.chdir(ROOT)   # nbdev_clean reads settings.ini
    over = []
    for p in a.notebooks:
        p = p.resolve()
        size = output_bytes(p) if a.check else refresh(p, a.timeout)
        if a.check: print(f'{p.relative_to(ROOT)}: {size / 1e3:.0f} kB')
        if size > BUDGET: over.append(p.name)
    if over: sys.exit(f'over the {BUDGET / 1e6:.0f} MB output budget: {", ".join(over)}')
