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

def test_default_job_writes_everything(tmp_path):
    out = tmp_path/'run'
    r = run([PY, '-m', 'semcorr_nb.train', '--out', str(out), *SMALL], env=ENV, timeout=900)
    assert 'PCK@0.1' in r.stdout, r.stdout[-3000:]
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

def test_checkpoint_of_another_model_is_refused(tmp_path):
    out = tmp_path/'run'
    run([PY, '-m', 'semcorr_nb.train', '--out', str(out), *SMALL, '--epochs', '1', '--no-test-after', '--no-picture'], env=ENV, timeout=900)
    r = run([PY, '-m', 'semcorr_nb.train', '--out', str(out), '--resume', '--model', 'cats-tiny', *SMALL], env=ENV, timeout=900, check=False)
    assert r.returncode != 0 and 'another model' in r.stderr and 'model:' in r.stderr, r.stderr[-2000:]

def test_nan_loss_stops_with_a_message(tmp_path):
    out = tmp_path/'run'
    r = run([PY, '-m', 'semcorr_nb.train', '--out', str(out), *SMALL, '--head-lr', '1e30', '--grad-clip', '0',
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
