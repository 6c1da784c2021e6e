"`python -m semcorr_nb.train` end to end on CPU: the default job, resume after a real kill, DDP with two processes, bad input."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from helpers import ROOT, run, PY

# A short schedule of the tiny default model: small images, few pairs, two epochs.
SMALL = ['--img-size', '64', '--train-pairs', '48', '--val-pairs', '16', '--test-pairs', '16', '--batch-size', '8',
         '--epochs', '2', '--num-workers', '0', '--no-tensorboard', '--log-every', '1']
ENV = {'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': ''}

def _weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)['model']

@pytest.fixture(scope='module')
def small_run(tmp_path_factory):
    "The default job on a short schedule; its run folder is shared by the tests below."
    out = tmp_path_factory.mktemp('runs')/'run'
    r = run([PY, '-m', 'semcorr_nb.train', '--out', str(out), *SMALL], env=ENV, timeout=900)
    return out, r

def test_default_job_writes_everything(small_run):
    out, r = small_run
    assert 'PCK@0.10' in r.stdout, r.stdout[-3000:]
    for f in ['config.json', 'metrics.csv', 'last.pth', 'best.pth', 'test_pck.json', 'summary.json', 'matches.png']:
        assert (out/f).exists(), f'{f} missing from the run folder'
    cfg = json.loads((out/'config.json').read_text())
    assert cfg['train']['img_size'] == 64 and cfg['train']['benchmark'] == 'synthetic'
    summary = json.loads((out/'summary.json').read_text())
    assert len(summary['history']) == 2

def test_help_lists_every_setting():
    r = run([PY, '-m', 'semcorr_nb.train', '--help'])
    for flag in ['--model', '--benchmark', '--datapath', '--head-lr', '--backbone-lr', '--epochs', '--batch-size',
                 '--img-size', '--resume', '--no-augment', '--model-args', '--scheduler']:
        assert flag in r.stdout, flag

def test_resume_after_kill_matches_uninterrupted(tmp_path):
    "Kill a run mid-epoch (SIGKILL), resume it, and compare with a run never interrupted: same weights."
    args = [*SMALL, '--epochs', '2', '--ckpt-every', '2', '--no-test-after', '--no-picture']
    ref = tmp_path/'ref'
    run([PY, '-m', 'semcorr_nb.train', '--out', str(ref), *args], env=ENV, timeout=900)
    out = tmp_path/'killed'
    p = subprocess.Popen([PY, '-m', 'semcorr_nb.train', '--out', str(out), *args], cwd=ROOT,
                         env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 600:   # wait for a mid-epoch checkpoint of the second epoch, then kill
        if (out/'last.pth').exists():
            try: ck = torch.load(out/'last.pth', map_location='cpu', weights_only=True)
            except Exception: ck = None
            if ck and ck['epoch'] == 1 and ck['step_in_epoch'] > 0: break
        if p.poll() is not None: break
        time.sleep(0.05)
    assert p.poll() is None, 'the run ended before it could be killed mid-epoch; make it longer'
    p.send_signal(signal.SIGKILL); p.wait()
    ck = torch.load(out/'last.pth', map_location='cpu', weights_only=True)
    assert ck['epoch'] == 1 and ck['step_in_epoch'] > 0
    r = run([PY, '-m', 'semcorr_nb.train', '--out', str(out), '--resume', *args], env=ENV, timeout=900)
    assert 'resumed' in r.stdout
    a, b = _weights(ref/'last.pth'), _weights(out/'last.pth')
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), f'{k} differs after resume'

def test_ctrl_c_saves_the_step_and_resume_matches_uninterrupted(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, workers included) mid-epoch: a checkpoint of that step, exit 130 and a line
    saying how to continue, no traceback; resuming ends with the weights of a run never interrupted, each step logged once."""
    args = [*SMALL, '--epochs', '3', '--ckpt-every', '0', '--num-workers', '1', '--no-test-after', '--no-picture']
    ref = tmp_path/'ref'
    run([PY, '-m', 'semcorr_nb.train', '--out', str(ref), *args], env=ENV, timeout=900)
    out = tmp_path/'int'
    p = subprocess.Popen([PY, '-m', 'semcorr_nb.train', '--out', str(out), *args], cwd=ROOT, env={**os.environ, **ENV},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 600 and p.poll() is None:   # wait for step 8 (epoch 2 of 3), then press Ctrl-C
        m = out/'metrics.csv'
        if m.exists() and any(l.split(',')[1:3] == ['8', 'loss'] for l in m.read_text().splitlines()): break
        time.sleep(0.02)
    assert p.poll() is None, 'the run ended before it could be interrupted; make it longer'
    os.killpg(p.pid, signal.SIGINT)
    err = p.communicate(timeout=300)[1]
    assert p.returncode == 130 and '--resume' in err and 'Traceback' not in err, err[-3000:]
    ck = torch.load(out/'last.pth', map_location='cpu', weights_only=True)
    assert 8 <= ck['global_step'] < 18 and ck['step_in_epoch'] > 0, (ck['epoch'], ck['step_in_epoch'])
    run([PY, '-m', 'semcorr_nb.train', '--out', str(out), '--resume', *args], env=ENV, timeout=900)
    a, b = _weights(ref/'last.pth'), _weights(out/'last.pth')
    for k in a: assert torch.equal(a[k], b[k]), f'{k} differs after resume'
    steps = [int(l.split(',')[1]) for l in (out/'metrics.csv').read_text().splitlines()[1:] if l.split(',')[2] == 'loss']
    assert steps == sorted(set(steps)) == list(range(1, 19)), 'each step once in metrics.csv'

def test_checkpoint_of_another_model_is_refused(tmp_path):
    out = tmp_path/'run'
    run([PY, '-m', 'semcorr_nb.train', '--out', str(out), *SMALL, '--epochs', '1', '--no-test-after', '--no-picture'], env=ENV, timeout=900)
    r = run([PY, '-m', 'semcorr_nb.train', '--out', str(out), '--resume', '--model', 'cats-tiny', *SMALL], env=ENV, timeout=900, check=False)
    assert r.returncode != 0 and 'another model' in r.stderr and 'model:' in r.stderr, r.stderr[-2000:]

def test_nan_loss_stops_with_a_message(tmp_path):
    out = tmp_path/'run'
    # a zero temperature makes the default model's logits infinite: the loss is NaN at the first step
    r = run([PY, '-m', 'semcorr_nb.train', '--out', str(out), *SMALL, '--model-args', '{"temperature": 0.0}',
             '--no-test-after'], env=ENV, timeout=900, check=False)
    assert r.returncode != 0 and 'loss is' in r.stderr and 'last good checkpoint' in r.stderr, (r.stdout[-2000:], r.stderr[-2000:])

def test_ddp_two_processes_on_cpu(tmp_path):
    "torchrun with 2 CPU processes (gloo): trains, only rank 0 writes, and the result matches the math of one process."
    out = tmp_path/'ddp'
    r = run([PY, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port', '29533', '-m', 'semcorr_nb.train',
             '--out', str(out), *SMALL, '--epochs', '1', '--no-picture'], env=ENV, timeout=900)
    assert (out/'best.pth').exists() and (out/'test_pck.json').exists()
    assert r.stdout.count('epoch 1/1:') == 1, 'only rank 0 prints the epoch summary'
    cfg = json.loads((out/'config.json').read_text())
    assert cfg['train']['batch_size'] == 8

def test_evaluate_checkpoint_and_baselines(small_run, tmp_path):
    out, _ = small_run
    r = run([PY, '-m', 'semcorr_nb.evaluate', '--checkpoint', str(out/'best.pth'), '--pairs', '12', '--num-workers', '0',
             '--out', str(tmp_path/'ev')], env=ENV, timeout=600)
    res = json.loads((tmp_path/'ev'/'pck.json').read_text())
    assert res['summary']['n_pairs'] == 12 and res['protocol']['name'] == 'official'
    assert (tmp_path/'ev'/'best_worst.png').exists() and (tmp_path/'ev'/'pairs.csv').read_text().count('\n') >= 12
    assert 'per category' in r.stdout or 'per pair' in r.stdout
    r = run([PY, '-m', 'semcorr_nb.evaluate', '--baseline', 'zero', '--pairs', '12', '--img-size', '64', '--num-workers', '0',
             '--protocol', 'cats'], env=ENV, timeout=600)
    assert "protocol 'cats'" in r.stdout
    r = run([PY, '-m', 'semcorr_nb.evaluate', '--checkpoint', str(tmp_path/'none.pth')], env=ENV, check=False)
    assert r.returncode == 2 and 'none.pth' in r.stderr

def test_match_own_images(small_run, tmp_path):
    from PIL import Image
    import numpy as np
    out, _ = small_run
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((90, 120, 3)) * 255).astype('uint8')).save(tmp_path/'a.jpg')
    Image.fromarray((rng.random((70, 50)) * 255).astype('uint8')).save(tmp_path/'b.png')      # grey, another size
    r = run([PY, '-m', 'semcorr_nb.match', str(tmp_path/'a.jpg'), str(tmp_path/'b.png'), '--checkpoint', str(out/'best.pth'),
             '--points', '10,20 60,45', '--out', str(tmp_path/'m')], env=ENV)
    res = json.loads((tmp_path/'m'/'matches.json').read_text())
    assert len(res['matches']) == 2 and res['target_size_hw'] == [70, 50] and (tmp_path/'m'/'matches.png').exists()
    for m in res['matches']: assert 0 <= m['target'][0] <= 50 and 0 <= m['target'][1] <= 70
    r = run([PY, '-m', 'semcorr_nb.match', str(tmp_path/'a.jpg'), str(tmp_path/'b.png'), '--checkpoint', str(out/'best.pth'),
             '--out', str(tmp_path/'g'), '--grid', '3'], env=ENV)
    assert len(json.loads((tmp_path/'g'/'matches.json').read_text())['matches']) == 9
    (tmp_path/'bad.jpg').write_bytes(b'not a picture')
    r = run([PY, '-m', 'semcorr_nb.match', str(tmp_path/'bad.jpg'), str(tmp_path/'b.png'), '--checkpoint', str(out/'best.pth')],
            env=ENV, check=False)
    assert r.returncode == 2 and 'bad.jpg' in r.stderr
    r = run([PY, '-m', 'semcorr_nb.match', str(tmp_path/'a.jpg'), str(tmp_path/'b.png'), '--checkpoint', str(out/'best.pth'),
             '--points', '500,20'], env=ENV, check=False)
    assert r.returncode == 2 and 'outside' in r.stderr

def test_tiny_preset_trains_at_its_own_recipe(tmp_path):
    "Rule 7: `--model actr-tiny` with the notebook's aids and no learning-rate or size flag trains at 64 px and lr 1e-3 (shortened here)."
    out = tmp_path/'actr'
    aids = '{"tiny_kind": "cnn", "cross_init": "identity", "aux_corr_weight": 1.0}'
    run([PY, '-m', 'semcorr_nb.train', '--model', 'actr-tiny', '--model-args', aids, '--out', str(out), '--epochs', '1',
         '--train-pairs', '16', '--val-pairs', '8', '--test-pairs', '8', '--num-workers', '0', '--no-tensorboard', '--no-picture'],
        env=ENV, timeout=900)
    cfg = json.loads((out/'config.json').read_text())
    assert (cfg['train']['img_size'], cfg['train']['head_lr'], cfg['train']['batch_size']) == (64, 1e-3, 8)
    assert cfg['model_name'] == 'actr-tiny' and cfg['model_config']['tiny_kind'] == 'cnn'

def test_resume_may_change_the_recipe_not_the_architecture(tmp_path):
    "Rule 5: a checkpoint is compatible when the architecture agrees; learning rates and epochs may change on --resume."
    out = tmp_path/'run'
    run([PY, '-m', 'semcorr_nb.train', '--out', str(out), *SMALL, '--epochs', '1', '--no-test-after', '--no-picture'], env=ENV, timeout=900)
    r = run([PY, '-m', 'semcorr_nb.train', '--out', str(out), *SMALL, '--epochs', '2', '--head-lr', '1e-4', '--resume',
             '--no-test-after', '--no-picture'], env=ENV, timeout=900)
    assert 'resumed' in r.stdout and 'epoch 2/2' in r.stdout
    r = run([PY, '-m', 'semcorr_nb.train', '--out', str(out), *SMALL, '--resume', '--model-args', '{"width": 8}'], env=ENV, check=False)
    assert r.returncode == 2 and 'width: checkpoint 24, here 8' in r.stderr

def test_a_first_release_checkpoint_still_loads(small_run, tmp_path):
    "A checkpoint of the first release (format semcorr_nb/1: model 'default', no `freeze_backbone`) is evaluated as it is."
    out, _ = small_run
    ck = torch.load(out/'best.pth', map_location='cpu', weights_only=True)
    old = dict(ck, format='semcorr_nb/1', model_name='default',
               model_config={k: v for k, v in ck['model_config'].items() if k != 'freeze_backbone'})
    torch.save(old, tmp_path/'old.pth')
    r = run([PY, '-m', 'semcorr_nb.evaluate', '--checkpoint', str(tmp_path/'old.pth'), '--pairs', '4', '--num-workers', '0'], env=ENV)
    assert 'default' in r.stdout and 'PCK@0.10' in r.stdout
