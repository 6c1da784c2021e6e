"""The shape of the package (CONTRIBUTING.md: one home per concept), checked on the generated modules and the notebooks.

Rule 1: no model module imports another model module. Rule 2: nothing imports `train` but its own command.
Rule 3: every model notebook ends by registering one `ModelSpec`. Rule 5: a model config holds architecture
only, and models do not resize their input. Rule 6: the learner comes before the models, which use it.
(Rule 4, a model added by one notebook alone, is tests/test_registry.py; rule 7, tiny presets train at their
own recipe, is notebook 17 and tests/test_train_cli.py.)"""
import ast, json, re
from dataclasses import fields
from pathlib import Path
import pytest, torch
from helpers import ROOT

PKG = ROOT/'semcorr_nb'
MODEL_MODULES = sorted(p.stem for p in (PKG/'models').glob('*.py') if p.stem != '__init__')

def imports(path:Path) -> set[str]:
    "Absolute dotted names of every `semcorr_nb` module `path` imports (relative imports resolved)."
    mod = '.'.join(path.relative_to(ROOT).with_suffix('').parts)
    pkg = mod.rsplit('.', 1)[0] if path.name != '__init__.py' else mod.removesuffix('.__init__')
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            base = n.module or ''
            if n.level:
                parts = pkg.split('.')[:len(pkg.split('.')) - (n.level - 1)]
                base = '.'.join(parts + ([base] if base else []))
            if base.startswith('semcorr_nb'):
                out.add(base)
                out.update(f'{base}.{a.name}' for a in n.names)     # `from . import x` may name a module
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names if a.name.startswith('semcorr_nb'))
    return out

def modules():
    return [p for p in PKG.rglob('*.py') if p.name != '_modidx.py']

def test_model_modules_are_there():
    assert {'cats', 'transformatcher', 'actr', 'lpmflow', 'tiny', 'baselines'} <= set(MODEL_MODULES), MODEL_MODULES

def test_rule1_no_model_module_imports_another():
    for p in (PKG/'models').glob('*.py'):
        if p.stem == '__init__': continue
        others = {f'semcorr_nb.models.{m}' for m in MODEL_MODULES if m != p.stem}
        bad = imports(p) & others
        assert not bad, f'{p.relative_to(ROOT)} imports the model module(s) {sorted(bad)}: move the shared piece to a shared module'

def test_rule2_only_the_train_command_imports_train():
    for p in modules():
        if p.stem == 'train' and p.parent == PKG: continue
        assert 'semcorr_nb.train' not in imports(p), f'{p.relative_to(ROOT)} imports semcorr_nb.train'
    # and nothing but notebook 17 itself (which teaches it) among the notebooks
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        if nb.stem == '17_train': continue
        src = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
        assert not re.search(r'(from|import) semcorr_nb\.train\b', src), f'{nb.name} imports semcorr_nb.train'

def _model_notebooks():
    out = {}
    for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        src = ''.join(cells[0]['source'])
        m = re.search(r'default_exp\s+models\.(\w+)', src)
        if m and m.group(1) != '__init__': out[m.group(1)] = cells
    return out

def test_rule3_each_model_notebook_ends_by_registering_one_spec():
    nbs = _model_notebooks()
    assert set(nbs) == set(MODEL_MODULES), (sorted(nbs), MODEL_MODULES)
    for name, cells in nbs.items():
        exported = [''.join(c['source']) for c in cells if c['cell_type'] == 'code' and ''.join(c['source']).startswith('#| export')]
        assert 'register(ModelSpec(' in exported[-1], f'the last exported cell of the {name} notebook must register its ModelSpec'
        assert sum(s.count('register(ModelSpec(') for s in exported) == 1, f'{name} registers more than one spec'

def test_rule5_configs_hold_architecture_only():
    from semcorr_nb.models import model_names, model_spec
    from semcorr_nb.train import TrainConfig
    recipe_fields = {f.name for f in fields(TrainConfig)} - {'model', 'model_args', 'ablation'}
    for spec in {id(model_spec(n)): model_spec(n) for n in model_names()}.values():
        overlap = set(spec.fields()) & recipe_fields
        assert not overlap, f'{spec.config.__name__} holds training settings {sorted(overlap)}: they belong in the recipe'
        assert 'img_size' in spec.recipe_for(), f'{spec.name} registers no input size'

@pytest.mark.parametrize('name', ['cats-tiny', 'transformatcher-tiny', 'actr-tiny', 'lpmflow-tiny', 'tiny-matcher'])
def test_rule5_models_compute_at_the_size_they_are_given(name):
    "No silent resize: the output grid follows the input size (here 64 and 96 px)."
    from semcorr_nb.models import build_model
    torch.manual_seed(0)
    m = build_model(name).eval()
    with torch.no_grad():
        a = m(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64))['flow'].shape[-1]
        b = m(torch.randn(1, 3, 96, 96), torch.randn(1, 3, 96, 96))['flow'].shape[-1]
    if name.startswith('cats'): assert a == b, 'CATs resizes its features to a fixed grid by design'
    else: assert b * 64 == a * 96, (name, a, b)

def test_rule6_the_learner_comes_before_the_models_and_they_use_it():
    order = [p.stem for p in sorted((ROOT/'nbs').glob('[0-9]*.ipynb'))]
    learn = order.index('06e_learn')
    for stem in ('09_cats', '10_transformatcher', '13_actr', '16_lpmflow'): assert order.index(stem) > learn
    for m in ('cats', 'transformatcher', 'actr', 'lpmflow'):
        src = (PKG/'models'/f'{m}.py').read_text()
        for own in ('def train_steps', 'def evaluate_pck', 'def parameter_table', 'def parameter_counts', 'def param_groups',
                    'def keypoint_flow_target', 'def correlation_ce', 'def to_model_batch', 'class TinyConvTokens', 'def optimizer'):
            assert own not in src, f'models/{m}.py defines {own.split()[1]} again: use the shared one'
    train = (PKG/'train.py').read_text()
    for use in ('train_step', 'model_pck', 'make_optimizer'): assert use in train, f'train.fit does not use learn.{use}'
