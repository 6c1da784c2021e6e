"""tools/side_by_side.py: the parts that need no official code (its timing, ratios, weight noise and its refusal without the clones)."""
import importlib.util, subprocess, sys
import torch
from helpers import ROOT

spec = importlib.util.spec_from_file_location('side_by_side', ROOT/'tools'/'side_by_side.py')
sbs = importlib.util.module_from_spec(spec); spec.loader.exec_module(sbs)

def test_interleaved_times_rotate_the_order():
    order = []
    times = sbs.interleaved_times({'a': lambda: order.append('a'), 'b': lambda: order.append('b')}, repeats=2, warmup=1)
    assert order == ['a', 'b', 'a', 'b', 'b', 'a'] and [len(v) for v in times.values()] == [2, 2]

def test_ratios_take_the_faster_package_dtype():
    r = sbs.ratios({'official fp32': 3.0, 'package fp32': 2.0, 'package bf16': 1.0})
    assert r['vs package fp32'] == 1.5 and r['vs package best'] == 3.0 and r['package best'] == 'package bf16'
    assert sbs.ratios({'official fp32': 3.0, 'package fp32': 1.5, 'package bf16': 2.5})['package best'] == 'package fp32'

def test_perturbed_weights_move_and_variances_stay_positive():
    sd = {'w': torch.ones(4, 4), 'bn.running_var': torch.ones(8), 'n': torch.tensor(3)}
    p = sbs.perturbed(sd)
    assert not torch.equal(p['w'], sd['w']) and (p['bn.running_var'] > 0).all() and torch.equal(p['n'], sd['n'])
    assert torch.equal(sbs.perturbed(sd)['w'], p['w']), 'seeded'

def test_without_the_official_code_it_says_how_to_get_it(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'side_by_side.py'), '--official-root', str(tmp_path/'none'), '--models', 'cats'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'git clone https://github.com/SunghwanHong/Cost-Aggregation-transformers' in r.stderr, r.stderr
