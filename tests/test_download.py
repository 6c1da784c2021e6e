"""End-to-end test of `python -m semcorr_nb.data.download` against a local HTTP server on 127.0.0.1.

The test builds a miniature SPair-71k tarball (the official top-level folder `SPair-71k/`, the real
layout, a few pairs with images), serves it from a thread-based http.server with Range support, and
runs the CLI as a subprocess with `SEMCORR_DOWNLOAD_MIRROR` pointing at it. Nothing leaves the machine.
"""
import contextlib, functools, hashlib, http.server, io, json, os, socket, subprocess, sys, tarfile, threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = 'SPair-71k.tar.gz'


class Handler(http.server.SimpleHTTPRequestHandler):
    "Serves files from `directory`; honours `Range: bytes=N-`; can cut a transfer short (`cut_after`)."
    cut_after = None  # send only this many bytes of the body, then drop the connection
    log = None

    def log_message(self, *args): pass

    def do_GET(self):
        self.log.append((self.path, self.headers.get('Range')))
        path = Path(self.directory)/self.path.lstrip('/')
        if not path.is_file(): return self.send_error(404)
        data = path.read_bytes(); rng = self.headers.get('Range')
        if rng:
            start = int(rng.split('=')[1].split('-')[0])
            if start >= len(data):
                self.send_response(416); self.send_header('Content-Range', f'bytes */{len(data)}'); self.end_headers(); return
            self.send_response(206); self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(len(data))); self.end_headers()
        if self.cut_after is not None:
            self.wfile.write(data[:self.cut_after]); self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)


@contextlib.contextmanager
def serve(folder, cut_after=None):
    log = []
    handler = type('H', (Handler,), {'cut_after': cut_after, 'log': log})
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=srv.serve_forever, daemon=True); thread.start()
    try: yield f'http://127.0.0.1:{srv.server_address[1]}', log
    finally: srv.shutdown(); srv.server_close()


def jpeg_bytes(w, h, seed):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO(); Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, 'JPEG'); return buf.getvalue()


def add(tar, name, data):
    info = tarfile.TarInfo(name); info.size = len(data); info.mtime = 0; tar.addfile(info, io.BytesIO(data))


PAIRS = [('000001-2008_000001-2008_000002:aeroplane', 'test'), ('000002-2008_000002-2008_000001:aeroplane', 'test'),
         ('000001-2009_000003-2009_000004:cow', 'trn'), ('000001-2009_000004-2009_000003:cow', 'val')]


def build_spair_tar(path, extra=None):
    "A small SPair-71k tarball in the official layout; `extra` {name: bytes} adds members verbatim."
    with tarfile.open(path, 'w:gz') as tar:
        layouts = {'trn': [], 'val': [], 'test': []}
        images = {}
        for k, (name, split) in enumerate(PAIRS):
            layouts[split].append(name)
            ids, cat = name.rsplit(':', 1); _, src, trg = ids.split('-', 2)
            ann = dict(pair_id=int(ids[:6]), filename=name, src_imname=f'{src}.jpg', trg_imname=f'{trg}.jpg',
                       src_imsize=[64, 48, 3], trg_imsize=[64, 48, 3], src_bndbox=[2, 3, 60, 40], trg_bndbox=[1, 1, 50, 45],
                       category=cat, src_kps=[[10, 12], [30, 20], [70, 5]], trg_kps=[[11, 13], [29, 21], [40, 30]],
                       kps_ids=['0', '1', '2'], mirror=0, viewpoint_variation=1, scale_variation=0, truncation=2, occlusion=0)
            add(tar, f'SPair-71k/PairAnnotation/{split}/{name}.json', json.dumps(ann).encode())
            images[f'SPair-71k/JPEGImages/{cat}/{src}.jpg'] = images[f'SPair-71k/JPEGImages/{cat}/{trg}.jpg'] = None
        for i, name in enumerate(sorted(images)): add(tar, name, jpeg_bytes(64, 48, i))
        for split, names in layouts.items():
            add(tar, f'SPair-71k/Layout/large/{split}.txt', ''.join(n + '\n' for n in names).encode())
        add(tar, 'SPair-71k/README', b'mini SPair-71k for tests\n')
        for name, data in (extra or {}).items(): add(tar, name, data)
    return path


def cli(*args, mirror=None, timeout=120):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]),
               NO_ALBUMENTATIONS_UPDATE='1')
    env.pop('SEMCORR_DOWNLOAD_MIRROR', None)
    if mirror: env['SEMCORR_DOWNLOAD_MIRROR'] = mirror
    return subprocess.run([sys.executable, '-m', 'semcorr_nb.data.download', *map(str, args), '--no-progress', '--timeout', '10'],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd='/')


@pytest.fixture
def www(tmp_path):
    d = tmp_path/'www'; d.mkdir(); build_spair_tar(d/ARCHIVE); return d


def sha(path): return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_download_extract_verify_and_rerun(www, tmp_path):
    dp = tmp_path/'data'
    with serve(www) as (url, log):
        r = cli('spair', '--datapath', dp, '--sha256', sha(www/ARCHIVE), '--size', (www/ARCHIVE).stat().st_size, mirror=url)
        assert r.returncode == 0, r.stderr + r.stdout
        assert log == [(f'/{ARCHIVE}', None)]
        root = dp/'SPair-71k'
        assert (root/'Layout/large/test.txt').read_text().count('\n') == 2
        assert (root/'JPEGImages/cow/2009_000003.jpg').exists() and (root/'.download-complete').exists()
        assert not (dp/ARCHIVE).exists() and not list(dp.glob('.extract-*')) and not list(dp.glob('*.part'))
        # idempotent: a second run asks the server for nothing and changes nothing
        before = sorted((p.relative_to(dp), p.stat().st_mtime_ns) for p in dp.rglob('*'))
        r2 = cli('spair', '--datapath', dp, mirror=url)
        assert r2.returncode == 0 and 'nothing to do' in r2.stdout and len(log) == 1
        assert sorted((p.relative_to(dp), p.stat().st_mtime_ns) for p in dp.rglob('*')) == before
    # verify counts the mini splits against the official sizes: it must say how many are missing
    v = cli('verify', 'spair', '--datapath', dp)
    assert v.returncode == 1 and '2 / 12,234 pairs' in v.stdout and '1 / 53,340' in v.stdout and 'FAIL' in v.stdout
    # and the reader works on what was extracted
    sys.path.insert(0, str(REPO))
    from semcorr_nb.data import SPairDataset
    rec = SPairDataset(dp, 'test', img_size=32)[0]
    assert rec['n_kps'] == 2 and rec['truncation'] == 2 and rec['src_hw'].tolist() == [48, 64]  # (70, 5) lies outside


def test_integrity_check_refuses_wrong_checksum_and_size(www, tmp_path):
    dp = tmp_path/'data'
    with serve(www) as (url, _):
        r = cli('spair', '--datapath', dp, '--sha256', '0' * 64, mirror=url)
        assert r.returncode == 1 and 'SHA-256' in r.stderr and 'Traceback' not in r.stderr
        assert not (dp/'SPair-71k').exists()                     # nothing extracted
        assert (dp/ARCHIVE).exists()                             # kept for inspection; the message says delete it
        (dp/ARCHIVE).unlink()
        r = cli('spair', '--datapath', dp, '--size', 1234, mirror=url)
        assert r.returncode == 1 and 'expected 1234' in r.stderr and not (dp/'SPair-71k').exists()


def test_truncated_and_corrupt_archives_are_refused(tmp_path):
    www = tmp_path/'www'; www.mkdir(); full = build_spair_tar(tmp_path/'full.tar.gz').read_bytes()
    (www/ARCHIVE).write_bytes(full[:len(full) // 2])             # the server itself has a truncated file
    dp = tmp_path/'data'
    with serve(www) as (url, _):
        r = cli('spair', '--datapath', dp, mirror=url)
    assert r.returncode == 1 and 'corrupt or truncated' in r.stderr and not (dp/'SPair-71k').exists()
    (www/ARCHIVE).write_bytes(b'<!DOCTYPE html><html><body>Google Drive can\'t scan this file</body></html>')
    dp2 = tmp_path/'data2'
    with serve(www) as (url, _):
        r = cli('spair', '--datapath', dp2, mirror=url)
    assert r.returncode == 1 and 'not a tar/zip archive' in r.stderr and not (dp2/'SPair-71k').exists()


def test_unsafe_paths_are_refused(tmp_path):
    www = tmp_path/'www'; www.mkdir()
    build_spair_tar(www/ARCHIVE, extra={'SPair-71k/../../escaped.txt': b'pwned'})
    dp = tmp_path/'deep'/'data'
    with serve(www) as (url, _):
        r = cli('spair', '--datapath', dp, mirror=url)
    assert r.returncode == 1 and 'refusing to extract' in r.stderr and 'escaped.txt' in r.stderr
    assert not (tmp_path/'escaped.txt').exists() and not (tmp_path/'deep'/'escaped.txt').exists()
    assert not (dp/'SPair-71k').exists()


def test_resume_after_interrupted_transfer(www, tmp_path):
    dp = tmp_path/'data'; size = (www/ARCHIVE).stat().st_size
    with serve(www, cut_after=size // 3) as (url, _):            # the connection drops a third of the way
        r = cli('spair', '--datapath', dp, mirror=url)
    assert r.returncode == 1 and 'run the same command again to resume' in r.stderr
    part = dp/(ARCHIVE + '.part'); have = part.stat().st_size
    assert 0 < have < size
    with serve(www) as (url, log):
        r = cli('spair', '--datapath', dp, '--sha256', sha(www/ARCHIVE), mirror=url)
    assert r.returncode == 0, r.stderr
    assert log == [(f'/{ARCHIVE}', f'bytes={have}-')]             # only the rest was asked for
    assert (dp/'SPair-71k'/'Layout'/'large'/'trn.txt').exists() and not part.exists()


def test_offline_message_and_manual_install(www, tmp_path):
    with serve(www) as (url, _): pass                             # a port where nothing listens any more
    dp = tmp_path/'data'
    r = cli('spair', '--datapath', dp, mirror=url)
    assert r.returncode == 1 and 'Traceback' not in r.stderr
    for s in ('Could not download SPair-71k', 'To install SPair-71k by hand',
              'https://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz', str(dp/ARCHIVE),
              f'python -m semcorr_nb.data.download spair --datapath {dp}'):
        assert s in r.stderr, s
    # following the steps: put the archive there by hand; the same command finishes without a server
    dp.mkdir(parents=True, exist_ok=True); (dp/ARCHIVE).write_bytes((www/ARCHIVE).read_bytes())
    r = cli('spair', '--datapath', dp, mirror=url)
    assert r.returncode == 0, r.stderr
    assert 'already here' in r.stdout and (dp/'SPair-71k'/'README').exists()


def test_missing_dataset_message_is_one_clear_error(tmp_path):
    code = ('from semcorr_nb.data import load_dataset\n'
            f'load_dataset("pfpascal", "test", {str(tmp_path)!r})\n')
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_ALBUMENTATIONS_UPDATE='1')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and 'DatasetNotFoundError' in r.stderr
    assert f'python -m semcorr_nb.data.download pfpascal --datapath {tmp_path}' in r.stderr and 'PF-PASCAL' in r.stderr
