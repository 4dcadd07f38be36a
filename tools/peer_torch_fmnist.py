#!/usr/bin/python3
"""SMLT-C's PyTorch CPU peer for `smlt-bench train`: compute-only training throughput.

Trains the same models as the C engine on Fashion-MNIST, on the CPU, with plain SGD (no momentum,
the same update the engine's local SGD does):
  mlp  784-256-128-10, ReLU between layers                       (the engine's mlp:784-256-128-10)
  cnn  LeNet-5: conv5x5x6 (padding 2) + ReLU, maxpool 2, conv5x5x16 + ReLU, maxpool 2,
       fc120 + ReLU, fc84 + ReLU, fc10                             (the engine's lenet5)
Each step gathers a shuffled batch (xtr[idx]), runs forward, cross-entropy, backward and the SGD
step. After --warmup steps, --reps timed runs of --batches steps each; samples/s per run, median
reported. Run it with Debian's interpreter (/usr/bin/python3, which sees python3-torch).

OPENBLAS_NUM_THREADS and OMP_NUM_THREADS are set to --threads before torch is imported: Debian's
torch does its matrix products in the system OpenBLAS, whose thread count torch.set_num_threads
does not govern. OPENBLAS_CORETYPE is left as the environment has it, as for the C side.

  /usr/bin/python3 tools/peer_torch_fmnist.py --model mlp --batch 64 --batches 400 --json
"""
import argparse
import gzip
import json
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('--model', choices=['mlp', 'cnn'], default='mlp')
ap.add_argument('--batch', type=int, default=64)
ap.add_argument('--batches', type=int, default=None, help='timed steps per run (default mlp 400, cnn 100)')
ap.add_argument('--warmup', type=int, default=20)
ap.add_argument('--reps', type=int, default=5)
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--lr', type=float, default=0.05)
ap.add_argument('--seed', type=int, default=0)
ap.add_argument('--data', default='/usr/share/datasets/fashion-mnist')
ap.add_argument('--json', action='store_true', help='print one JSON object')
args = ap.parse_args()
if args.batches is None:
    args.batches = 400 if args.model == 'mlp' else 100
if args.batch < 1 or args.batches < 1 or args.reps < 1 or args.threads < 1 or args.warmup < 0:
    ap.error('sizes must be positive')
os.environ['OPENBLAS_NUM_THREADS'] = str(args.threads)
os.environ['OMP_NUM_THREADS'] = str(args.threads)

import numpy as np  # noqa: E402  (after the thread settings on purpose)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def read_idx(path):
    """Returns the array in an IDX file of unsigned bytes (plain or gzip)."""
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ValueError(f'{path}: not an unsigned-byte IDX file')
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    body = 4 + 4 * ndim
    if len(raw) - body != int(np.prod(dims)):
        raise ValueError(f'{path}: {len(raw) - body} data bytes for dims {dims}')
    return np.frombuffer(raw, dtype=np.uint8, offset=body).reshape(dims)


def load_train(d):
    x = read_idx(os.path.join(d, 'train-images-idx3-ubyte.gz'))
    y = read_idx(os.path.join(d, 'train-labels-idx1-ubyte.gz'))
    x = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(y.astype(np.int64))


def make_model(kind):
    if kind == 'mlp':
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def main():
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    xtr, ytr = load_train(args.data)
    n = xtr.shape[0]
    model = make_model(args.model)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(n, generator=gen)
    pos = 0
    bs = args.batch

    def step():
        nonlocal perm, pos
        if pos + bs > n:
            perm = torch.randperm(n, generator=gen)
            pos = 0
        idx = perm[pos:pos + bs]
        pos += bs
        xb, yb = xtr[idx], ytr[idx]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    rates = []
    loss = None
    for _ in range(args.reps):
        t0 = time.perf_counter()
        for _ in range(args.batches):
            loss = step()
        dt = time.perf_counter() - t0
        rates.append(args.batches * bs / dt)
    out = {
        'model': args.model,
        'threads': args.threads,
        'batch': bs,
        'batches': args.batches,
        'reps': args.reps,
        'samples_per_s': statistics.median(rates),
        'best_samples_per_s': max(rates),
        'rates': [round(r, 1) for r in rates],
        'loss': float(loss.item()),
        'params': sum(p.numel() for p in model.parameters()),
        'torch': torch.__version__,
        'openblas_coretype': os.environ.get('OPENBLAS_CORETYPE'),
    }
    if args.json:
        print(json.dumps(out), flush=True)
    else:
        print(f"torch {out['torch']} {args.model} threads={args.threads} batch={bs}: median "
              f"{out['samples_per_s']:.0f} samples/s (best {out['best_samples_per_s']:.0f}), "
              f"loss {out['loss']:.4f}", flush=True)


if __name__ == '__main__':
    try:
        main()
    except (OSError, ValueError) as e:
        print(f'peer_torch_fmnist: {e}', file=sys.stderr)
        sys.exit(1)
