#!/usr/bin/env python3
"""Side by side with the official code: the authors' implementation and this package's, the same weights, one run.

    python tools/side_by_side.py --official-root DIR [--models cats transformatcher actr lpmflow] [--repeats 7] [--threads 2] [--json out.json]

DIR holds the authors' repositories, cloned as they are (no edits needed):

    git clone https://github.com/SunghwanHong/Cost-Aggregation-transformers   # CATs
    git clone https://github.com/wookiekim/transformatcher                     # TransforMatcher (also: pip install einops rotary-embedding-torch)
    git clone https://github.com/YXSUNMADMAX/ACTR
    git clone https://github.com/YXSUNMADMAX/LPMFlow

Nothing of them is copied into this project: each is imported by path, in this process, while its model is built.
What a CPU without the authors' downloads needs is done in memory: their ResNet-101 constructors are called
with `pretrained=False` (the official CATs and TransforMatcher ask for `pretrained=True`, a download), and ACTR,
which refuses to start without an iBOT checkpoint file, is given an empty one in a temporary folder.

For each model, at the input side of the registry (`models.input_size`) and batch 1:
1. the official model is built with random weights, moved a little by seeded noise (so that no tensor sits at a
   trivial value, a BatchNorm scale of 1, where a wrong mapping would not show), in eval mode; the package model is
   built from its state dict by the package's loader (`models.official_model`, `conventions='official'`);
2. their outputs are compared in float32 (dense flow in cells of its grid, 40 keypoints in pixels of the frame the
   official evaluation reads them in), and the package's bfloat16-autocast output against its float32 output;
3. one pair -> 40 transferred keypoints is timed for the official model in float32 and under bfloat16 autocast
   (where it runs), and for the package model in both, interleaved (each repeat runs every contender once, in a
   rotating order) under `torch.inference_mode`, after a warm-up; medians and their ratios are reported.
The timed unit includes each side's keypoint read-out: TransforMatcher's official forward stops at the 4D
correlation and its kernel soft-argmax lives in `Geometry.transfer_kps_diff`, which is called; the other three
official forwards return the flow, read at the keypoints as their evaluation does (a few array lookups).
"""
import argparse, contextlib, gc, io, json, os, statistics, sys, tempfile, time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
N_KPS = 40

# ---------------------------------------------------------------------------------------------- where the clones are
@dataclass
class Official:
    "One official repository: where to get it, how to find it under --official-root, what it needs."
    model:str                      # the registry family
    github:str                     # owner/name
    marker:str                     # a file every clone of it has
    pip:tuple = ()                 # third-party modules it imports beyond torch, torchvision, numpy: (module, pip name)
    aliases:tuple = ()             # other folder names accepted (e.g. 'owner+name')

    @property
    def url(self): return f'https://github.com/{self.github}'
    @property
    def folders(self): return (self.github.split('/')[1], self.github.replace('/', '+'), *self.aliases)

OFFICIAL = {o.model: o for o in [
    Official('cats', 'SunghwanHong/Cost-Aggregation-transformers', 'models/cats.py', (('timm', 'timm'),), ('cats', 'CATs')),
    Official('transformatcher', 'wookiekim/transformatcher', 'transformatcher.py',
             (('einops', 'einops'), ('rotary_embedding_torch', 'rotary-embedding-torch')), ('tfm', 'TransforMatcher')),
    Official('actr', 'YXSUNMADMAX/ACTR', 'models/ACTR.py', (('timm', 'timm'),), ('actr',)),
    Official('lpmflow', 'YXSUNMADMAX/LPMFlow', 'models/LPMFlow.py', (('timm', 'timm'),), ('lpm', 'lpmflow')),
]}

class SetupError(SystemExit):
    "A user mistake, said in a few lines before any work (exit status 2)."
    def __init__(self, msg): super().__init__(2); self.msg = msg
    def __str__(self): return self.msg

def clone_help(models) -> str:
    return '\n'.join(f'  git clone {OFFICIAL[m].url}' for m in models)

def find_repos(root, models) -> dict:
    "model -> the folder of its official clone under `root`; a `SetupError` naming every folder missing and how to get it."
    if root is None: raise SetupError('--official-root is required: a folder holding the authors\' repositories, e.g.\n'
                                      '  mkdir official && cd official\n' + clone_help(models))
    root = Path(root).expanduser()
    if not root.is_dir(): raise SetupError(f'--official-root {root} is not a folder. Make it and clone the authors\' code into it:\n'
                                           f'  mkdir -p {root} && cd {root}\n' + clone_help(models))
    found, missing = {}, []
    for m in models:
        o = OFFICIAL[m]
        hit = next((root/f for f in o.folders if (root/f/o.marker).is_file()), None)
        if hit is None and (root/o.marker).is_file() and len(models) == 1: hit = root      # the clone itself
        if hit is None:
            near = [f for f in o.folders if (root/f).is_dir()]
            why = f' ({root/near[0]} exists but has no {o.marker}: not a clone of {o.github}?)' if near else ''
            missing.append(f'  {m}: expected {root}/{o.folders[0]}/{o.marker}{why}\n      git clone {o.url} {root/o.folders[0]}')
        else: found[m] = hit
    if missing: raise SetupError(f'--official-root {root} lacks the official code of {len(missing)} model(s):\n' + '\n'.join(missing) +
                                 '\nClone them unchanged: the CPU patches they need (ResNet pretrained=False, an empty iBOT file for ACTR) '
                                 'are applied in memory by this script.')
    return found

def check_modules(models):
    "Refuse, before any work, when a third-party module an official repository imports is not installed."
    import importlib.util
    need = sorted({(mod, pipname, m) for m in models for mod, pipname in OFFICIAL[m].pip if importlib.util.find_spec(mod) is None})
    if need: raise SetupError('the official code needs modules that are not installed:\n' +
                              '\n'.join(f'  {mod} (for {m}): pip install {p}' for mod, p, m in need))

# ---------------------------------------------------------------------------------------------- importing by path
@contextlib.contextmanager
def imported_from(repo:Path):
    "Put `repo` first on sys.path while the block runs; its top-level modules (`models`, `utils`, ...) shadow and then leave `sys.modules`."
    repo = Path(repo).resolve()
    names = {p.stem for p in repo.glob('*.py')} | {p.name for p in repo.iterdir() if p.is_dir() and not p.name.startswith('.')}
    clash = lambda k: k.split('.')[0] in names
    stash = {k: sys.modules.pop(k) for k in list(sys.modules) if clash(k)}
    path, bytecode = list(sys.path), sys.dont_write_bytecode
    sys.path.insert(0, str(repo)); sys.dont_write_bytecode = True                     # leave the user's clone as it was
    try: yield
    finally:
        for k in [k for k in sys.modules if clash(k)]: del sys.modules[k]
        sys.modules.update(stash)
        sys.path[:], sys.dont_write_bytecode = path, bytecode

@contextlib.contextmanager
def no_pretrained(module, *names):
    "Call `module.<name>` with `pretrained=False` whatever the caller asks (the official ResNets would download ImageNet weights)."
    orig = {n: getattr(module, n) for n in names}
    for n, f in orig.items(): setattr(module, n, (lambda f: lambda *a, pretrained=False, **k: f(*a, pretrained=False, **k))(f))
    try: yield
    finally:
        for n, f in orig.items(): setattr(module, n, f)

def quiet():
    "The official constructors print (weights loaded, keys): keep the table readable."
    return contextlib.redirect_stdout(io.StringIO())

# ---------------------------------------------------------------------------------------------- the four official models
def build_official(model:str, repo:Path, device):
    "The official model, random weights, eval mode, on `device`; plus a `run(src, trg, kps_px) -> (flow cells or coords, kps_px)`."
    import importlib, torch
    with imported_from(repo), quiet():
        if model == 'cats':
            resnet = importlib.import_module('models.feature_backbones.resnet')
            with no_pretrained(resnet, 'resnet101'): off = importlib.import_module('models.cats').CATs()
        elif model == 'transformatcher':
            backbone = importlib.import_module('backbone')
            with no_pretrained(backbone, 'resnet101'):
                tfm = importlib.import_module('transformatcher')
                off = tfm.TransforMatcher('resnet101', [3, 4], str(device), input_size(model))
            off.geometry = tfm.Geometry                                              # class state set by the constructor
        elif model == 'actr':
            with tempfile.TemporaryDirectory() as d:                                # ACTR refuses to start without a file
                ibot = os.path.join(d, 'ibot.pth'); torch.save({}, ibot)
                off = importlib.import_module('models.ACTR').ACTR(ibot_ckp_file=ibot, freeze=True)
        elif model == 'lpmflow':
            off = importlib.import_module('models.LPMFlow').LPMFlow(ibot_ckp_file=os.path.join(tempfile.gettempdir(), 'no-ibot-checkpoint'))
    return off.to(device).eval()

def perturbed(sd:dict, seed=0, scale=0.05) -> dict:
    "Every float tensor moved by seeded noise of `scale` × its spread; running variances stay positive."
    import torch
    g, out = torch.Generator().manual_seed(seed), {}
    for k, v in sd.items():
        if not v.is_floating_point() or v.numel() == 0: out[k] = v.clone(); continue
        s = v.float().std().item() if v.numel() > 1 else 0.
        n = torch.randn(v.shape, generator=g) * scale * (s if s > 0 else 1.)
        out[k] = v * (1 + n.abs().to(v.dtype)) if k.endswith('running_var') else v + n.to(v.dtype)
    return out

def official_readout(flow_cells, kps_px, frame:int):
    "The peers' keypoint read-out: flow upsampled bilinearly to the frame, read at the keypoint's integer pixel, added to it."
    import torch, torch.nn.functional as F
    up = F.interpolate(flow_cells.double(), (frame, frame), mode='bilinear') * (frame / flow_cells.shape[-1])
    kp = kps_px.long().clamp(0, frame - 1)
    return torch.stack([kp[b] + up[b][:, kp[b, :, 1], kp[b, :, 0]].T for b in range(len(kp))]).double()

def official_forward(model:str, off, frame:int):
    "`f(src, trg, kps_px, dense=True) -> (dense output, kps_px)` of an official model: flow in cells (coords for TransforMatcher) and keypoints."
    import torch
    if model == 'transformatcher':
        G = off.geometry
        def f(src, trg, kps, dense=True):
            corr = off(src, trg)[0]
            k = G.transfer_kps_diff(corr, kps.transpose(1, 2).clone(), torch.tensor([kps.shape[1]] * len(kps)), normalized=False, is_train=False)
            if not dense: return None, k                                             # what is timed: their inference, no more
            pdf = torch.softmax(G.apply_gaussian_kernel(corr), dim=2)
            coords = torch.stack([(pdf * G.grid_x).sum(2), (pdf * G.grid_y).sum(2)], -1)    # (B, N_s, 2) corner frame
            return coords.double(), (k.transpose(1, 2).double() + 1) * (frame / 2)
        return f
    pick = (lambda o: o[0]) if model == 'lpmflow' else (lambda o: o)
    return lambda src, trg, kps, dense=True: (lambda flow: (flow.double(), official_readout(flow, kps, frame)))(pick(off(src, trg)))

def package_forward(model:str, ours, frame:int):
    "The same for the package model: flow in cells (coords for TransforMatcher) and keypoints in pixels of the frame."
    from semcorr_nb.flow import flow_to_cells
    def f(src, trg, kps, dense=True):
        o = ours(src, trg)
        k = (ours.transfer(o, kps / (frame / 2) - 1).double() + 1) * (frame / 2)
        return (o['coords'].double() if model == 'transformatcher' else flow_to_cells(o['flow'].double())), k
    return f

def dense_diff(model:str, ours, a, b) -> float:
    "Largest difference of two dense outputs, in cells of their grid."
    d = (a - b).abs().max().item()
    if model != 'transformatcher': return d
    n = int(round(a.shape[1] ** 0.5))                                           # coords: normalised -> cells of the n × n grid
    return d / (2 / (n - 1) if getattr(ours.config, 'grid', 'centres') == 'corners' else 2 / n)

def bf16_diffs(who:str, model:str, ours, low:tuple, ref:tuple) -> dict:
    "How far a bfloat16 output moves from the float32 one: dense output (cells) and keypoints (px), median and largest."
    px = (low[1] - ref[1]).norm(dim=-1)                                           # (B, N) distance per keypoint
    return {f'{who}_bf16_flow_cells_max': dense_diff(model, ours, low[0], ref[0]),
            f'{who}_bf16_kps_px_median': px.median().item(), f'{who}_bf16_kps_px_max': px.max().item()}

# ---------------------------------------------------------------------------------------------- timing and the table
def interleaved_times(fns:dict, # name -> callable with no arguments
                      repeats:int=7, warmup:int=1,
                      sync:Callable=lambda: None, # waits for the device before a clock read
                      clock:Callable=time.perf_counter,
                     ) -> dict: # name -> list of seconds, one per repeat
    "Wall time of every contender, interleaved: each repeat runs each once, the order rotating so no one always follows the same."
    names = list(fns)
    for _ in range(warmup):
        for n in names: fns[n](); sync()
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = clock(); fns[n](); sync(); times[n].append(clock() - t0)
    return times

CONTENDERS = ('official fp32', 'official bf16', 'package fp32', 'package bf16')

def ratios(med:dict) -> dict:
    "official-fp32 / package-fp32 and official-fp32 / package-best (the faster of its fp32 and bf16)."
    o, p32 = med.get('official fp32'), med.get('package fp32')
    best = min(v for k, v in med.items() if k.startswith('package') and v is not None) if p32 is not None else None
    return {'vs package fp32': o / p32 if o and p32 else None, 'vs package best': o / best if o and best else None,
            'package best': next((k for k in ('package bf16', 'package fp32') if med.get(k) == best), None)}

def _f(x, spec):
    return '–' if x is None else format(x, spec)

def format_table(results:list, machine:dict) -> str:
    "The Markdown table of a run: medians (ms), the two ratios, the output differences; then the machine."
    cols = ['model', 'input', 'official fp32 ms', 'official bf16 ms', 'package fp32 ms', 'package bf16 ms', 'official fp32 ÷ package fp32',
            'official fp32 ÷ package best', 'package vs official, fp32: flow (cells) / kps (px), max', 'bf16 vs fp32, kps (px) median / max: package; official']
    rows = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in results:
        if 'error' in r: rows.append(f"| {r['model']} | {r['error']} |" + ' |' * (len(cols) - 2)); continue
        m, q, d = r['median_ms'], r['ratios'], r['diffs']
        ob = _f(m.get('official bf16'), '.0f') if 'official_bf16_error' not in r else f"fails ({r['official_bf16_error']})"
        bf = lambda who: f"{_f(d.get(f'{who}_bf16_kps_px_median'), '.2g')} / {_f(d.get(f'{who}_bf16_kps_px_max'), '.2g')}"
        rows.append(f"| {r['model']} | {r['size']}² | {_f(m.get('official fp32'), '.0f')} | {ob} | {_f(m.get('package fp32'), '.0f')} "
                    f"| {_f(m.get('package bf16'), '.0f')} | {_f(q['vs package fp32'], '.2f')}× "
                    f"| {_f(q['vs package best'], '.2f')}× ({(q['package best'] or '–').split()[-1]}) "
                    f"| {_f(d.get('flow_cells'), '.2g')} / {_f(d.get('kps_px'), '.2g')} | {bf('package')}; {bf('official')} |")
    la = machine.get('load_avg_start'), machine.get('load_avg_end')
    rows += ['', f"{machine.get('cpu', '?')} ({', '.join(machine.get('isa', [])) or 'no AMX/AVX-512-BF16'}), {machine.get('threads')} threads of "
                 f"{machine.get('cores')} cores, {machine.get('device', 'cpu')}, torch {machine.get('torch')}, batch 1, medians of {machine.get('repeats')} "
                 f"interleaved repeats after {machine.get('warmup')} warm-up; load average {la[0]} at the start, {la[1]} at the end."]
    return '\n'.join(rows)

# ---------------------------------------------------------------------------------------------- one model
def input_size(model:str) -> int:
    from semcorr_nb.models import input_size as size
    return size(model)

def readout_frame(ours, size:int) -> int:
    "The pixel frame keypoints are read in: the truncated read-out's, or the input's."
    c = ours.config
    return int(c.readout_size) if getattr(c, 'readout', None) == 'truncated' and getattr(c, 'readout_size', None) else size

def side_by_side(model:str, repo:Path, repeats:int=7, warmup:int=1, device='cpu', seed:int=0) -> dict:
    "Build both, compare their outputs, time the four contenders; a dict of the numbers."
    import torch
    from semcorr_nb.models import official_model
    from semcorr_nb.profiling import random_pair
    dev = torch.device(device)
    torch.manual_seed(seed)
    size = input_size(model)
    off = build_official(model, repo, dev)
    sd = perturbed(off.state_dict(), seed=seed)
    off.load_state_dict(sd)
    sd = {k: v.detach().cpu() for k, v in off.state_dict().items()}                 # as the official model holds it (LPMFlow ties tables on load)
    ours, info = official_model(model, sd, device=dev)
    del sd
    frame = readout_frame(ours, size)
    src, trg = random_pair(1, size, dev, seed=seed)
    kps = torch.rand(1, N_KPS, 2, generator=torch.Generator().manual_seed(seed)).mul(frame - 1).to(dev)
    f_off, f_pkg = official_forward(model, off, frame), package_forward(model, ours, frame)
    bf16 = lambda: torch.autocast(dev.type, dtype=torch.bfloat16)
    res = dict(model=model, size=size, kps_frame=frame, n_kps=N_KPS, official_repo=str(repo), dropped_official_keys=len(info['dropped']))
    with torch.inference_mode():
        o32, p32 = f_off(src, trg, kps), f_pkg(src, trg, kps)
        with bf16(): pb = f_pkg(src, trg, kps)
        d = dict(flow_cells=dense_diff(model, ours, p32[0], o32[0]), kps_px=(p32[1] - o32[1]).norm(dim=-1).max().item())
        d.update(bf16_diffs('package', model, ours, pb, p32))
        try:                                                                      # float64: what is left of the fp32 difference is rounding
            off.double(); ours.double()
            o64, p64 = f_off(src.double(), trg.double(), kps), f_pkg(src.double(), trg.double(), kps)
            d.update(flow_cells_f64=dense_diff(model, ours, p64[0], o64[0]), kps_px_f64=(p64[1] - o64[1]).norm(dim=-1).max().item())
        except Exception as e: res['float64_error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:120]}' if str(e) else type(e).__name__
        finally: off.float(); ours.float()
        try:
            with bf16(): ob = f_off(src, trg, kps)
            d.update(bf16_diffs('official', model, ours, ob, o32))
        except Exception as e: res['official_bf16_error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:120]}' if str(e) else type(e).__name__
        res['diffs'] = d
        def call(f, autocast=False):
            def g():
                with bf16() if autocast else contextlib.nullcontext(): return f(src, trg, kps, dense=False)
            return g
        fns = {'official fp32': call(f_off), 'official bf16': call(f_off, True), 'package fp32': call(f_pkg), 'package bf16': call(f_pkg, True)}
        if 'official_bf16_error' in res: del fns['official bf16']
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == 'cuda' else (lambda: None)
        times = interleaved_times(fns, repeats, warmup, sync)
    res['times_s'] = {k: [round(t, 6) for t in v] for k, v in times.items()}
    res['median_ms'] = {k: 1e3 * statistics.median(times[k]) if k in times else None for k in CONTENDERS}
    res['ratios'] = ratios(res['median_ms'])
    del off, ours; gc.collect()
    return res

# ---------------------------------------------------------------------------------------------- the command
def machine_info(device:str) -> dict:
    import torch
    from semcorr_nb.benchmark import machine_info as info
    m = info(device)
    try: flags = next((l.split(':', 1)[1].split() for l in open('/proc/cpuinfo') if l.startswith('flags')), [])
    except OSError: flags = []
    m['isa'] = [f for f in ('amx_bf16', 'avx512_bf16', 'avx512f') if f in flags]
    m['device'] = device
    return m

def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='Clone the official code into one folder:\n' + clone_help(OFFICIAL))
    p.add_argument('--official-root', metavar='DIR', help='folder holding the clones of the official repositories (named as git clone names them)')
    p.add_argument('--models', nargs='+', default=list(OFFICIAL), choices=list(OFFICIAL), metavar='MODEL', help=f'any of {", ".join(OFFICIAL)} (default: all)')
    p.add_argument('--repeats', type=int, default=7, help='timed calls per contender (median reported; default 7)')
    p.add_argument('--warmup', type=int, default=1, help='untimed calls per contender first (default 1)')
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: as torch chooses)')
    p.add_argument('--device', default='cpu', help="'cpu' (default) or 'cuda'")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', metavar='FILE', help='also write every number (all times, all differences, the machine) to FILE')
    return p

def main(argv=None) -> list:
    args = make_parser().parse_args(argv)
    if args.repeats < 1: raise SetupError('--repeats must be at least 1')
    if args.json and Path(args.json).exists(): raise SetupError(f'--json {args.json} exists: give a new file name (nothing is overwritten)')
    repos = find_repos(args.official_root, args.models)
    check_modules(args.models)
    import torch
    if args.threads: torch.set_num_threads(args.threads)
    if args.device.startswith('cuda') and not torch.cuda.is_available(): raise SetupError('--device cuda: no CUDA device here')
    machine = machine_info(args.device)
    machine.update(repeats=args.repeats, warmup=args.warmup, load_avg_start=_loadavg())
    results = []
    for m in args.models:
        print(f'{m}: building both models from {repos[m]} ...', file=sys.stderr, flush=True)
        try: results.append(side_by_side(m, repos[m], args.repeats, args.warmup, args.device, args.seed))
        except Exception as e:
            import traceback; traceback.print_exc()
            results.append(dict(model=m, error=f'{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ""}'))
        print(f"{m}: done", file=sys.stderr, flush=True)
    machine['load_avg_end'] = _loadavg()
    print(format_table(results, machine))
    if args.json: Path(args.json).write_text(json.dumps(dict(machine=machine, results=results), indent=1))
    return results

def _loadavg():
    try: return [round(x, 2) for x in os.getloadavg()]
    except OSError: return None

if __name__ == '__main__':
    sys.path.insert(0, str(ROOT))
    try: main()
    except SetupError as e:
        print(f'side_by_side.py: error: {e}', file=sys.stderr); sys.exit(2)
