"""Adding a model is one notebook: a model defined and registered here, in the test, and nowhere else, is trained,
evaluated, used to match two images and benchmarked by the package's own commands, with no other file edited."""
import json, os
from dataclasses import dataclass
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
from PIL import Image
from helpers import ROOT, run, PY
from semcorr_nb.backbones import TinyConvNet
from semcorr_nb.correlation import correlation
from semcorr_nb.flow import corr_to_flow
from semcorr_nb.losses import correlation_ce
from semcorr_nb.models import Matcher, ModelSpec, register, model_spec

@dataclass
class DotNetConfig:
    width:int = 8                                   # channels of the CNN's first stage

class DotNet(Matcher):
    "A model written for this test: a small CNN, a cosine correlation, a cross-entropy over target cells."
    def __init__(self, config:DotNetConfig|None=None):
        super().__init__(); self.config = config or DotNetConfig()
        self.backbone = TinyConvNet(self.config.width, 2 * self.config.width)
    def forward(self, src_img, trg_img):
        fs, ft = F.normalize(self.backbone(src_img), dim=1), F.normalize(self.backbone(trg_img), dim=1)
        hw_s, hw_t = tuple(fs.shape[-2:]), tuple(ft.shape[-2:])
        corr = correlation(fs, ft, normalize=False)
        return dict(flow=corr_to_flow(corr, hw_s, hw_t), corr=corr, grids=(hw_s, hw_t))
    def loss(self, out, b):
        ce = correlation_ce(out['corr'], *out['grids'], b['src_kps'], b['trg_kps'], b['kps_valid'], beta=0.05)
        return ce, {'ce': ce.detach()}

register(ModelSpec('dotnet', DotNet, DotNetConfig, presets={'dotnet': {}, 'dotnet-tiny': dict(width=4)},
                   recipe=dict(img_size=32, epochs=1, batch_size=4, head_lr=1e-3, backbone_lr=1e-3, train_pairs=8, val_pairs=4,
                               test_pairs=4, augment=False, num_workers=0, tensorboard=False),
                   stages={'backbone': 'backbone'}, doc='a model defined in tests/test_registry.py'))

def test_a_model_defined_here_goes_through_every_command(tmp_path, capsys):
    from semcorr_nb import train, evaluate, match, benchmark
    assert model_spec('dotnet').module == __name__
    torch.set_num_threads(1)
    summary = train.main(['--model', 'dotnet', '--out', str(tmp_path/'run')])
    assert len(summary['history']) == 1 and 'test' in summary and (tmp_path/'run'/'best.pth').exists()
    cfg = json.loads((tmp_path/'run'/'config.json').read_text())
    assert cfg['model_name'] == 'dotnet' and cfg['train']['img_size'] == 32 and cfg['model_config'] == {'width': 8}
    evaluate.main(['--checkpoint', str(tmp_path/'run'/'best.pth'), '--pairs', '4', '--num-workers', '0', '--out', str(tmp_path/'ev')])
    assert json.loads((tmp_path/'ev'/'pck.json').read_text())['summary']['n_pairs'] == 4
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype('uint8')).save(tmp_path/'a.png')
    res = match.main([str(tmp_path/'a.png'), str(tmp_path/'a.png'), '--checkpoint', str(tmp_path/'run'/'best.pth'),
                      '--points', '10,10 25,20', '--out', str(tmp_path/'m')])
    assert res['model'] == 'dotnet' and res['input_size'] == 32 and len(res['matches']) == 2
    # the benchmark runs each model in a fresh process, which imports this test module to find the model
    benchmark.main(['--models', 'dotnet', '--quick', '--train', '--out', str(tmp_path/'bench.json')])
    rep = json.loads((tmp_path/'bench.json').read_text())
    (r,) = rep['results']
    assert r['model'] == 'dotnet-tiny' and 'error' not in r and r['size'] == 32 and r['pid'] != os.getpid()
    assert r['train']['pairs_per_s'] > 0 and set(r['stage_s']) == {'backbone', 'correlation'}

def test_a_model_file_named_in_the_environment_reaches_the_command_line(tmp_path):
    "`SEMCORR_MODELS` names a .py file of your own: the command line (and torchrun's processes) register it too."
    (tmp_path/'mine.py').write_text(
        'from dataclasses import dataclass\n'
        'from semcorr_nb.models import ZeroFlow, ModelSpec, register\n'
        '@dataclass\nclass MineConfig: pass\n'
        "register(ModelSpec('mine', ZeroFlow, MineConfig, presets={'mine': {}}, recipe=dict(img_size=48), trainable=False, doc='my own'))\n")
    r = run([PY, '-m', 'semcorr_nb.train', '--list-models'], env={'SEMCORR_MODELS': str(tmp_path/'mine.py')})
    assert 'mine' in r.stdout and 'my own' in r.stdout and '48px' in r.stdout
