"""The notebooks are read in JupyterLab (issue 16, point 7): `pip install -e ".[dev]"` brings it, and
`jupyter lab nbs/` serves them. This test starts that server on 127.0.0.1 as a reader would, opens
the notebooks a reader starts with (00–03) through it, and has each one's kernel run the notebook's
own first cells — the imports and the first test — over the same websocket JupyterLab uses."""
import json, os, re, shutil, socket, subprocess, time, uuid
from pathlib import Path
from urllib.request import Request, urlopen
import pytest
from helpers import ROOT, PY

FIRST = ['00_core', '00a_errors', '01_correlation', '02_flow', '03_pck']

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

class Server:
    "A `jupyter lab` process on 127.0.0.1 with a token; `get`/`post` speak its REST API."
    def __init__(self, root:Path, log:Path):
        self.port, self.token = free_port(), uuid.uuid4().hex
        self.url = f'http://127.0.0.1:{self.port}'
        env = {**os.environ, 'JUPYTER_PLATFORM_DIRS': '1', 'MPLBACKEND': 'Agg', 'NO_ALBUMENTATIONS_UPDATE': '1',
               'CUDA_VISIBLE_DEVICES': '', 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
        self.proc = subprocess.Popen(
            [PY, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={self.port}', f'--IdentityProvider.token={self.token}',
             f'--ServerApp.root_dir={root}', '--ServerApp.port_retries=0', '--LabApp.news_url=', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
            + (['--allow-root'] if hasattr(os, 'geteuid') and os.geteuid() == 0 else []),   # CI machines run as root
            cwd=root, env=env, stdout=log.open('w'), stderr=subprocess.STDOUT)
        self.log = log

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = Request(self.url + path, data=data, method=method,
                      headers={'Authorization': f'token {self.token}', 'Content-Type': 'application/json'})
        with urlopen(req, timeout=60) as r: return r.status, r.read()

    def wait(self, timeout=120):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None: break
            try: return self.request('GET', '/api/status')
            except OSError: time.sleep(0.5)
        raise AssertionError(f'jupyter lab did not start:\n{self.log.read_text()[-3000:]}')

    def stop(self):
        self.proc.terminate()
        try: self.proc.wait(20)
        except subprocess.TimeoutExpired: self.proc.kill()

def _message(msg_type:str, content:dict) -> tuple:
    msg_id = uuid.uuid4().hex
    return msg_id, json.dumps({'header': {'msg_id': msg_id, 'msg_type': msg_type, 'username': 'test', 'session': uuid.uuid4().hex,
                                          'version': '5.3', 'date': ''}, 'parent_header': {}, 'metadata': {}, 'channel': 'shell',
                               'content': content})

def _wait_ready(ws, deadline:float):
    "Ask for `kernel_info` every 2 s until the kernel answers, as JupyterLab does on connecting (a request sent to a kernel still starting can be lost)."
    import websocket
    while time.monotonic() < deadline:
        asked, text = _message('kernel_info_request', {})
        ws.send(text); ws.settimeout(2)
        end = time.monotonic() + 2
        try:
            while time.monotonic() < end:
                m = json.loads(ws.recv())
                if m['msg_type'] == 'kernel_info_reply' and m.get('parent_header', {}).get('msg_id') == asked: return
        except websocket.WebSocketTimeoutException: pass
    raise AssertionError('the kernel did not answer kernel_info')

def run_in_kernel(server:Server, kernel_id:str, code:str, timeout=120) -> dict:
    "Execute `code` in a kernel through the server's websocket, once the kernel answers; the reply and the text it printed."
    import threading, websocket
    ws = websocket.create_connection(f'ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels?token={server.token}', timeout=timeout)
    timer = threading.Timer(timeout, ws.close); timer.start()      # the server's pings would keep a blocked recv alive
    try:
        _wait_ready(ws, time.monotonic() + timeout / 2)
        ws.settimeout(timeout)
        msg_id, text = _message('execute_request', {'code': code, 'silent': False, 'store_history': True, 'user_expressions': {},
                                                    'allow_stdin': False, 'stop_on_error': True})
        ws.send(text)
        reply, idle, printed = None, False, []
        while reply is None or not idle:             # the reply (shell) and the idle status (iopub) come in either order
            try: m = json.loads(ws.recv())
            except Exception as e: return {'status': reply and reply['status'], 'text': ''.join(printed) + f'\n(no reply within {timeout} s: {e!r})'}
            if m.get('parent_header', {}).get('msg_id') != msg_id: continue
            if m['msg_type'] == 'stream': printed.append(m['content']['text'])
            if m['msg_type'] == 'error': printed.append('\n'.join(m['content']['traceback']))
            if m['msg_type'] == 'execute_reply': reply = m['content']
            if m['msg_type'] == 'status' and m['content']['execution_state'] == 'idle': idle = True
        return {'status': reply['status'], 'text': ''.join(printed)}
    finally: timer.cancel(); ws.close()

def first_cells(nb:dict) -> list:
    "A notebook's code cells up to and including the first that tests something (calls a `test_` function)."
    out = []
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        s = ''.join(c['source'])
        if any(l.startswith('#|') and ('gpu' in l or 'slow' in l) for l in s.splitlines()): continue
        out.append(s)
        if re.search(r'^\s*test_\w+\(', s, re.M): break
    return out

@pytest.fixture(scope='module')
def server(tmp_path_factory):
    if shutil.which('jupyter-lab') is None and subprocess.run([PY, '-c', 'import jupyterlab'], capture_output=True).returncode:
        pytest.fail('JupyterLab is not installed: `pip install -e ".[dev]"` should bring it (settings.ini dev_requirements)')
    s = Server(ROOT, tmp_path_factory.mktemp('lab')/'server.log')
    try:
        s.wait(); yield s
    finally: s.stop()

@pytest.mark.timeout(300)
def test_jupyter_lab_serves_the_notebooks(server):
    status, page = server.request('GET', '/lab/tree/nbs/00_core.ipynb')
    assert status == 200 and b'JupyterLab' in page
    status, body = server.request('GET', '/api/contents/nbs')
    names = {f['name'] for f in json.loads(body)['content']}
    assert {f'{n}.ipynb' for n in FIRST} <= names

@pytest.mark.timeout(600)
@pytest.mark.parametrize('name', FIRST)
def test_a_first_notebook_opens_and_its_kernel_runs_its_first_cells(server, name):
    path = f'nbs/{name}.ipynb'
    status, body = server.request('GET', f'/api/contents/{path}?content=1')
    nb = json.loads(body)['content']
    assert status == 200 and nb['nbformat'] == 4 and len(nb['cells']) > 5
    status, body = server.request('POST', '/api/sessions', {'path': path, 'name': f'{name}.ipynb', 'type': 'notebook',
                                                           'kernel': {'name': 'python3'}})
    session = json.loads(body)
    try:
        for i, code in enumerate(first_cells(nb)):                 # one request per cell, as JupyterLab sends them
            got = run_in_kernel(server, session['kernel']['id'], code)
            assert got['status'] == 'ok', f'{path}, code cell {i}, failed in a JupyterLab kernel:\n{got["text"][-3000:]}'
        assert 'test_' in code
        # the kernel's working folder is the notebook's, as in JupyterLab, and it imports this project's package
        got = run_in_kernel(server, session['kernel']['id'], 'import os, semcorr_nb; print(os.getcwd(), os.path.dirname(semcorr_nb.__file__))')
        assert got['status'] == 'ok' and got['text'].split() == [str(ROOT/'nbs'), str(ROOT/'semcorr_nb')], got
    finally:
        server.request('DELETE', f'/api/sessions/{session["id"]}')
