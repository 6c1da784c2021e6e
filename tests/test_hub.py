"hubconf.py (hand-written, at the top of the repository): every entry builds its model through torch.hub, with a checkpoint of either kind."
import torch
from helpers import ROOT

def hub(entry, **kw): return torch.hub.load(str(ROOT), entry, source='local', trust_repo=True, **kw)

def test_entries_and_dependencies():
    import importlib.util
    spec = importlib.util.spec_from_file_location('hubconf_under_test', ROOT/'hubconf.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    assert {'cats', 'transformatcher', 'actr', 'lpmflow', 'tiny_matcher', 'model'} <= {n for n in dir(mod) if callable(getattr(mod, n)) and not n.startswith('_')}
    for dep in mod.dependencies: assert importlib.util.find_spec(dep), dep

def test_tiny_matcher_with_a_train_checkpoint(tmp_path):
    from semcorr_nb.models import build_model, model_config
    m = build_model('tiny-matcher')
    torch.save({'format': 'semcorr_nb/2', 'model_name': 'tiny-matcher', 'model_config': model_config(m), 'model': m.state_dict()}, tmp_path/'best.pth')
    back = hub('tiny_matcher', checkpoint=tmp_path/'best.pth')
    assert not back.training and type(back) is type(m)
    for a, b in zip(back.state_dict().values(), m.state_dict().values()): assert torch.equal(a, b)

def _official_cats(path, layers=(0, 3, 5, 7)):
    "Random tensors under the official CATs names for a tiny layer set, saved as the official training script saves them."
    from semcorr_nb.backbones import ResNetTaps
    g = torch.Generator().manual_seed(0); r = lambda *s: torch.randn(*s, generator=g) * 0.05
    sd = {'feature_extraction.backbone.' + k: v for k, v in ResNetTaps(list(range(34)), tiny=True).net.state_dict().items()}
    fs, P, L = 8, 32, len(layers); D = fs * fs + P; b = 'decoder.blocks.0.'
    for i, c in enumerate(ResNetTaps(layers, tiny=True).channels): sd[f'proj.{i}.weight'], sd[f'proj.{i}.bias'] = r(P, c), r(P)
    sd.update({'decoder.pos_embed_x': r(1, L, 1, fs, D // 2), 'decoder.pos_embed_y': r(1, L, fs, 1, D // 2), 'decoder.proj.weight': r(fs * fs, D),
               'decoder.proj.bias': r(fs * fs), 'x_normal': torch.linspace(-1, 1, fs) + r(fs), 'y_normal': torch.linspace(-1, 1, fs)})
    for a in ('attn', 'attn_multiscale'): sd.update({b + a + '.qkv.weight': r(3 * D, D), b + a + '.qkv.bias': r(3 * D), b + a + '.proj.weight': r(D, D), b + a + '.proj.bias': r(D)})
    for n in ('norm1', 'norm2', 'norm3', 'norm4'): sd.update({b + n + '.weight': 1 + r(D), b + n + '.bias': r(D)})
    for m in ('mlp', 'mlp2'): sd.update({b + m + '.fc1.weight': r(4 * D, D), b + m + '.fc1.bias': r(4 * D), b + m + '.fc2.weight': r(D, 4 * D), b + m + '.fc2.bias': r(D)})
    torch.save({'epoch': 1, 'state_dict': {'module.' + k: v for k, v in sd.items()}}, path)

def test_cats_with_the_authors_checkpoint(tmp_path):
    from semcorr_nb.models import official_model
    _official_cats(tmp_path/'model_best.pth')
    m = hub('cats', checkpoint=tmp_path/'model_best.pth', tiny=True, layers=[0, 3, 5, 7])
    assert m.config.conventions == 'official' and m.config.readout == 'truncated' and not m.training
    ref, _ = official_model('cats', tmp_path/'model_best.pth', tiny=True, layers=[0, 3, 5, 7])
    x, y = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad(): assert torch.allclose(m(x, y)['flow'], ref(x, y)['flow'])
    exact = hub('cats', checkpoint=tmp_path/'model_best.pth', conventions='exact', learnable_grid=True, tiny=True, layers=[0, 3, 5, 7])
    assert exact.config.conventions == 'exact' and exact.config.readout == 'bilinear'

def test_every_family_builds_without_a_checkpoint():
    assert hub('actr', tiny_backbone=True, depth=1, heads=2, sr_dim=16, sr_heads=2).config.conventions == 'exact'
    assert hub('lpmflow', conventions='official', tiny_backbone=True, tower_depth=1, heads=4, sr_heads=4, refine_dim=64, refine_heads=4).config.learnable_grid
    assert hub('transformatcher', tiny=True, pretrained=False, two_stream=False).config.grid == 'centres'
    assert hub('model', name='cats-tiny').config.tiny
