#!/usr/bin/env python3
"""Write README.md from index.ipynb (nbdev's `nbdev_readme` needs quarto, which cannot be installed here).

    python tools/readme.py           # regenerate README.md
    python tools/readme.py --check   # exit 1 if README.md is out of step with index.ipynb

Markdown cells are copied as they are; code cells become ```python blocks with their directive lines
(`#| ...`) removed; cells marked `#| hide` are left out; text outputs are kept as indented blocks and
images are left out (link committed pictures from markdown instead). A line `<!-- registry: models -->`
in a markdown cell becomes the table of the registered models (`semcorr_nb.models.models_table`), and a line
`<!-- registry: official -->` the table of the authors' checkpoints they can load (`semcorr_nb.models.official_table`),
so the README lists what the code knows.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = '<!-- Generated from index.ipynb by tools/readme.py: edit the notebook, then run `python tools/readme.py`. -->\n\n'

def directives(src:str) -> set:
    return {l[3:].strip().split(':')[0].strip() for l in src.splitlines() if l.startswith('#|')}

MODELS_MARKER = '<!-- registry: models -->'
OFFICIAL_MARKER = '<!-- registry: official -->'

def models_table() -> str:
    sys.path.insert(0, str(ROOT))
    from semcorr_nb.models import models_table
    return models_table()

def official_table() -> str:
    sys.path.insert(0, str(ROOT))
    from semcorr_nb.models import official_table
    return official_table()

def markdown(src:str) -> str:
    "A markdown cell with its registry markers replaced by the tables."
    if MODELS_MARKER in src: src = src.replace(MODELS_MARKER, models_table())
    if OFFICIAL_MARKER in src: src = src.replace(OFFICIAL_MARKER, official_table())
    return src.strip()

def render(nb:dict) -> str:
    out = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if 'hide' in directives(src): continue
        if c['cell_type'] == 'markdown': out.append(markdown(src))
        elif c['cell_type'] == 'code':
            code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
            if not code: continue
            out.append(f'```python\n{code}\n```')
            for o in c.get('outputs', []):
                t = o.get('text') or o.get('data', {}).get('text/plain')
                if t: out.append('    ' + ''.join(t).rstrip('\n').replace('\n', '\n    '))
    return HEADER + '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    text = render(json.loads((ROOT/'index.ipynb').read_text()))
    if '--check' in sys.argv:
        if (ROOT/'README.md').read_text() != text:
            sys.exit('README.md is out of step with index.ipynb: run `python tools/readme.py` and commit README.md')
        print('README.md is in step with index.ipynb')
    else:
        (ROOT/'README.md').write_text(text)
        print('wrote README.md')
