"`python -m semcorr_nb.benchmark` end to end, in its reduced (CI) mode: tiny models, few repeats, a fresh process per model."
import json, os
from helpers import ROOT, run, PY

def _bench(tmp_path, *args, check=True):
    out = tmp_path/'bench.json'
    # one thread: the test checks the machinery, and a shared machine starves a second OpenMP thread
    r = run([PY, '-m', 'semcorr_nb.benchmark', *args, '--out', str(out)], timeout=900, check=check,
            env={'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'})
    return r, (json.loads(out.read_text()) if out.exists() else None)

def test_quick_run_all_models(tmp_path):
    "The CI mode over every registered model (their tiny variants), float32 and bfloat16, with training: a table, a JSON report, no errors."
    r, rep = _bench(tmp_path, '--quick', '--train', '--dtype', 'float32,bfloat16')
    assert rep['config']['tiny'] and rep['config']['batch_sizes'] == [1, 2] and rep['config']['dtype'] == 'float32,bfloat16'
    peaks = rep['matmul_peaks']                                        # both yardsticks, measured in the same run
    assert list(peaks) == ['float32', 'bfloat16'] and all(p['gflops'] > 0 for p in peaks.values())
    assert rep['machine']['threads'] >= 1
    names = [x['model'] for x in rep['results']]
    assert names and all(n.endswith('-tiny') for n in names), names
    assert [x['dtype'] for x in rep['results']] == ['float32', 'bfloat16'] * (len(names) // 2)
    pids = set()
    for x in rep['results']:
        assert 'error' not in x, f"{x['model']} {x.get('dtype')}: {x.get('traceback', x.get('error'))}"
        assert x['flops'] > 0 and x['params_m'] > 0
        assert set(x['infer']) == {'1', '2'} and all(v['ms_per_pair'] > 0 for v in x['infer'].values())
        assert x['infer']['1']['memory']['rss_peak_mb'] > 0
        assert x['train']['pairs_per_s'] > 0 and x['train']['batch'] == 2      # bfloat16 training on the CPU too
        assert 0 < x['peak_fraction'] and abs(x['bound_ratio'] * x['peak_fraction'] - 1) < 1e-9
        assert x['peak_gflops'] >= peaks[x['dtype']]['gflops'] and x['matmul_peak']['dtype'] == x['dtype']
        assert abs(sum(x['flops_by_stage'].values()) - x['flops']) <= 1
        assert x['flops_counted_on'] == 'meta', x['model']
        assert x['stage_s'] and all(v >= 0 for v in x['stage_s'].values())
        pids.add(x['pid'])
        assert f"| {x['model']} | {x['size']}² | {x['dtype']} |" in r.stdout
    assert os.getpid() not in pids and len(pids) == len(rep['results'])   # each model and dtype in its own child process
    assert 'GFLOP/s' in r.stdout and 'Matmul peaks (float32' in r.stdout and 'bfloat16 ' in r.stdout.split('Matmul peaks')[1].split('\n')[0]

def test_bad_dtype_is_a_usage_error(tmp_path):
    "A dtype that is not one of the choices is refused before any work, in one line naming --dtype and the choices."
    r, rep = _bench(tmp_path, '--quick', '--dtype', 'float32,float16', check=False)
    assert r.returncode == 2 and '--dtype' in r.stderr and 'auto, float32, bfloat16' in r.stderr and rep is None
    assert 'matmul peak' not in r.stderr and 'Traceback' not in r.stderr

def test_compile_flag_on_cpu(tmp_path):
    "`--compile` runs the timed forwards through torch.compile (inductor on the CPU)."
    r, rep = _bench(tmp_path, '--models', 'tiny-matcher', '--quick', '--compile', '--batch-sizes', '1', '--size', '64', '--no-stages')
    (x,) = rep['results']
    assert 'error' not in x, x.get('traceback')
    assert rep['config']['compile'] and x['compile'] and x['infer']['1']['ms_per_pair'] > 0
    assert 'torch.compile' in r.stdout

def test_feature_cache_in_training(tmp_path):
    "`--feature-cache` caches the frozen backbone: every step after the first reads it from the cache."
    args = ['--models', 'actr-tiny', '--quick', '--train', '--batch-sizes', '1', '--size', '64', '--no-stages', '--no-isolate',
            '--model-args', '{"freeze": true}']
    r, rep = _bench(tmp_path, *args, '--feature-cache')
    (x,) = rep['results']
    assert 'error' not in x, x.get('traceback')
    # quick: 1 step measured for memory + 1 timed, 2 pairs, 2 images each: the second step hits 4 times
    assert x['train']['feature_cache'] and x['train']['cache_hits'] == 4, x['train']
    r, rep = _bench(tmp_path, *args)
    assert not rep['results'][0]['train']['feature_cache']

def test_unknown_model_is_a_clear_error(tmp_path):
    r, rep = _bench(tmp_path, '--models', 'nonesuch', '--quick', check=False)
    assert r.returncode == 2 and 'nonesuch' in r.stderr and 'known:' in r.stderr and rep is None

def test_list_models():
    r = run([PY, '-m', 'semcorr_nb.benchmark', '--list-models'])
    assert 'tiny-matcher' in r.stdout and 'actr-h' in r.stdout and '512²' in r.stdout
