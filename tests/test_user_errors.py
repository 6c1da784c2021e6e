"""A user's mistakes get one line and exit status 2, before any work; nothing is overwritten or lost.

Most cases call the commands' `main(argv)` in this process (the code path of `python -m ...` after the
interpreter starts); the cases that need a real process (signals, a full disk, DataLoader workers) run one."""
import contextlib, io, json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from helpers import ROOT, run, PY

torch.set_num_threads(1)
SMALL = ['--img-size', '64', '--train-pairs', '32', '--val-pairs', '8', '--test-pairs', '8', '--batch-size', '8',
         '--num-workers', '0', '--no-tensorboard', '--no-picture', '--log-every', '1']
ENV = {'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': ''}

def call(module, *argv):
    "Run `semcorr_nb.<module>.main(argv)` here: (exit status, stdout, stderr)."
    import importlib
    main = importlib.import_module(f'semcorr_nb.{module}').main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: main([str(a) for a in argv]); code = 0
        except SystemExit as e: code = e.code
    return code, out.getvalue(), err.getvalue()

def one_line_error(res, *needles):
    code, out, err = res
    assert code == 2, (code, out[-2000:], err[-2000:])
    assert err.startswith('error: ') and err.strip().count('\n') == 0 and 'Traceback' not in err, err
    for n in needles: assert n in err, (n, err)

@pytest.fixture(scope='module')
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp('runs')/'run'
    code, stdout, err = call('train', '--out', out, *SMALL, '--epochs', '2')
    assert code == 0, err
    return out

def test_a_second_run_into_a_used_folder_is_refused(run_folder):
    before = {f.name: f.read_bytes() for f in run_folder.iterdir() if f.is_file()}
    one_line_error(call('train', '--out', run_folder, *SMALL), 'already holds a run', '--resume', f'--out {run_folder}-2')
    assert {f.name: f.read_bytes() for f in run_folder.iterdir() if f.is_file()} == before, 'nothing was touched'

@pytest.mark.parametrize('args, needles', [
    (['--epochs', '0'], ['--epochs 0']), (['--epochs', '-1'], ['--epochs -1']),
    (['--batch-size', '0'], ['--batch-size 0']), (['--batch-size', '-2'], ['--batch-size -2']),
    (['--img-size', '0'], ['--img-size 0']), (['--img-size', '3'], ['--img-size 3']),
    (['--dtype', 'fp16'], ["--dtype 'fp16'", 'auto, float32, bfloat16']), (['--scheduler', 'linear'], ["--scheduler 'linear'"]),
    (['--benchmark', 'caltech'], ["--benchmark 'caltech'", 'synthetic']),
    (['--model-args', '[1, 2]'], ['is a JSON list']), (['--model-args', '{depth: 2}'], ['not valid JSON']),
    (['--model', 'zero'], ['training-free baseline']), (['--model', 'nonesuch'], ["'nonesuch' is not known", 'cats-tiny']),
])
def test_mistakes_are_one_line_before_any_work(tmp_path, args, needles):
    one_line_error(call('train', '--out', tmp_path/'run', *SMALL, *args), *needles)
    assert not (tmp_path/'run'/'config.json').exists(), 'refused before anything was written'

@pytest.mark.parametrize('model', ['tiny-matcher', 'cats-tiny', 'transformatcher-tiny', 'actr-tiny', 'lpmflow-tiny'])
def test_unknown_model_args_list_the_valid_keys(tmp_path, model):
    one_line_error(call('train', '--out', tmp_path/'run', '--model', model, *SMALL, '--model-args', '{"no_such_field": 1}'),
                   "'no_such_field' is not a field of", 'valid: ')

@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without a GPU')
def test_cuda_without_a_gpu(tmp_path):
    one_line_error(call('train', '--out', tmp_path/'run', *SMALL, '--device', 'cuda'), 'no CUDA GPU is visible', '--device cpu')

def test_an_output_folder_that_cannot_be_written_is_refused_first(tmp_path):
    (tmp_path/'file').write_text('x')
    t0 = time.time()
    one_line_error(call('train', '--out', tmp_path/'file', *SMALL), 'is a file, not a folder')
    one_line_error(call('train', '--out', tmp_path/'file'/'below', *SMALL), 'cannot be written')
    res = call('evaluate', '--baseline', 'zero', '--pairs', '4', '--num-workers', '0', '--out', tmp_path/'file')
    one_line_error(res, 'is a file, not a folder'); assert 'PCK' not in res[1], 'refused before evaluating'
    one_line_error(call('match', tmp_path/'file', tmp_path/'file', '--checkpoint', tmp_path/'none.pth', '--out', tmp_path/'file'), 'is a file')
    assert time.time() - t0 < 60

def test_evaluate_and_match_refuse_bad_values(tmp_path):
    one_line_error(call('evaluate', '--baseline', 'nn-foo'), "--baseline 'nn-foo' is not a registered model", 'nn-dinov2')
    one_line_error(call('evaluate', '--baseline', 'zero', '--alphas', '-0.1'), 'argument --alphas', 'out of range')
    one_line_error(call('evaluate', '--baseline', 'zero', '--pairs', '-3'), 'argument --pairs', 'at least 0')
    one_line_error(call('evaluate', '--baseline', 'zero', '--img-size', '0'), 'argument --img-size', 'at least 32')
    one_line_error(call('match', 'a.jpg', 'b.jpg', '--checkpoint', 'c.pth', '--grid', '0'), 'argument --grid', 'at least 1')

def test_evaluate_says_when_it_replaces_earlier_results(tmp_path):
    args = ['--baseline', 'zero', '--pairs', '4', '--num-workers', '0', '--out', tmp_path/'ev']
    assert call('evaluate', *args)[0] == 0
    code, out, _ = call('evaluate', *args)
    assert code == 0 and 'holds the results of an earlier evaluation' in out

def test_tensorboard_missing_is_one_line(tmp_path):
    import importlib.util
    if importlib.util.find_spec('tensorboard') is not None: pytest.skip('tensorboard is installed here')
    code, out, err = call('train', '--out', tmp_path/'run', *SMALL, '--epochs', '1', '--tensorboard', '--no-test-after')
    assert code == 0 and out.count('TensorBoard is not installed') == 1

def test_match_warns_about_a_model_trained_on_drawings(run_folder, tmp_path):
    Image.fromarray((np.random.default_rng(0).random((60, 80, 3)) * 255).astype('uint8')).save(tmp_path/'a.jpg')
    code, out, err = call('match', tmp_path/'a.jpg', tmp_path/'a.jpg', '--checkpoint', run_folder/'best.pth', '--out', tmp_path/'m')
    assert code == 0 and 'trained on the synthetic benchmark' in err

def test_offline_pretrained_weights_name_the_model_and_the_ways_on(tmp_path):
    t0 = time.time()
    one_line_error(call('evaluate', '--baseline', 'nn-dino', '--pairs', '2', '--num-workers', '0'),
                   'nn-dino', '"pretrained": false', '"checkpoint": "PATH"')
    assert time.time() - t0 < 40, 'no long retries'

def test_a_damaged_last_checkpoint_falls_back_to_the_one_before(run_folder, tmp_path):
    import shutil
    out = tmp_path/'copy'; shutil.copytree(run_folder, out)
    data = (out/'last.pth').read_bytes(); (out/'last.pth').write_bytes(data[:len(data) // 3])       # cut short
    code, stdout, err = call('train', '--out', out, *SMALL, '--epochs', '3', '--resume', '--no-test-after')
    assert code == 0, err
    assert 'falling back to the checkpoint before it' in err and 'epoch 3/3' in stdout
    (out/'last.pth').write_bytes(b'x'); (out/'last.previous.pth').write_bytes(b'y')
    one_line_error(call('train', '--out', out, *SMALL, '--epochs', '4', '--resume'), 'cannot be read, and neither can the checkpoint before it')

def _mini_spair(root:Path, corrupt:str=None, missing:str=None):
    "A two-pair SPair-71k tree (the official layout) with one corrupt or missing image."
    pairs = {'trn': ['000001-2009_000001-2009_000002:cow'], 'val': ['000002-2009_000002-2009_000001:cow']}
    for split, names in pairs.items():
        (root/'Layout'/'large').mkdir(parents=True, exist_ok=True); (root/'Layout'/'large'/f'{split}.txt').write_text('\n'.join(names) + '\n')
        (root/'PairAnnotation'/split).mkdir(parents=True, exist_ok=True)
        for n in names:
            ids, cat = n.rsplit(':', 1); _, s, t = ids.split('-', 2)
            ann = dict(src_imname=f'{s}.jpg', trg_imname=f'{t}.jpg', src_imsize=[64, 48, 3], trg_imsize=[64, 48, 3], category=cat,
                       src_bndbox=[2, 3, 60, 40], trg_bndbox=[1, 1, 50, 45], src_kps=[[10, 12], [30, 20]], trg_kps=[[11, 13], [29, 21]],
                       viewpoint_variation=0, scale_variation=0, truncation=0, occlusion=0)
            (root/'PairAnnotation'/split/f'{n}.json').write_text(json.dumps(ann))
    (root/'JPEGImages'/'cow').mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(['2009_000001', '2009_000002']):
        p = root/'JPEGImages'/'cow'/f'{name}.jpg'
        if name == missing: continue
        if name == corrupt: p.write_bytes(b'\xff\xd8\xff not a jpeg'); continue
        Image.fromarray(np.full((48, 64, 3), 60 * i, np.uint8)).save(p)

@pytest.mark.parametrize('damage', ['corrupt', 'missing'])
def test_a_bad_image_read_in_a_worker_is_one_line(tmp_path, damage):
    _mini_spair(tmp_path/'SPair-71k', **{damage: '2009_000002'})
    r = run([PY, '-m', 'semcorr_nb.train', '--benchmark', 'spair', '--datapath', str(tmp_path), '--out', str(tmp_path/'run'),
             '--img-size', '32', '--batch-size', '1', '--epochs', '1', '--num-workers', '1', '--no-tensorboard', '--no-augment'],
            env=ENV, check=False, timeout=600)
    err = r.stderr.strip()
    assert r.returncode == 2 and err.count('\n') == 0 and 'Traceback' not in err and 'DataLoader worker' not in err, err
    assert '2009_000002.jpg' in err and ('cannot decode' in err or 'not found' in err), err

def test_a_full_disk_is_named_and_leaves_nothing_behind(tmp_path):
    code = ('import errno, sys, torch\n'
            'def full(obj, f, *a, **k): f.write(b"part"); raise OSError(errno.ENOSPC, "No space left on device")\n'
            'torch.save = full\n'
            'from semcorr_nb import train\n'
            f'train.main(sys.argv[1:])\n')
    out = tmp_path/'run'
    r = run([PY, '-c', code, '--out', str(out), *SMALL, '--epochs', '1'], env=ENV, check=False, timeout=600)
    assert r.returncode == 2 and 'no space left on device while writing' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert not [p for p in out.iterdir() if p.name.endswith('.tmp')], 'no temporary file left'

def test_own_pairs_train_evaluate_and_report_bad_rows(tmp_path):
    from semcorr_nb.data.pairs import write_example
    f = write_example(tmp_path/'mine')
    code, out, err = call('train', '--benchmark', f'pairs:{f}', '--out', tmp_path/'run', '--img-size', '64', '--batch-size', '2',
                          '--epochs', '1', '--num-workers', '0', '--no-tensorboard', '--no-picture')
    assert code == 0, err
    assert "PCK · spair" in out and '2 pairs' in out                          # the file's test pairs, scored with their boxes
    code, out, err = call('evaluate', '--checkpoint', tmp_path/'run'/'best.pth', '--benchmark', f'pairs:{f}', '--num-workers', '0')
    assert code == 0 and 'PCK@0.10' in out, err
    data = json.loads(f.read_text()); data['pairs'][1]['target_kps'] = data['pairs'][1]['target_kps'][:1]
    f.write_text(json.dumps(data, indent=1))
    code, out, err = call('evaluate', '--baseline', 'zero', '--benchmark', f'pairs:{f}', '--num-workers', '0')
    assert code == 2 and 'pairs.json, line ' in err and 'target keypoints' in err, err
    r = run([PY, '-m', 'semcorr_nb.data.pairs', 'check', str(f)], check=False)
    assert r.returncode == 2 and 'pairs.json, line' in r.stderr
