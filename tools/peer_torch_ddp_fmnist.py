#!/usr/bin/python3
"""SMLT-C's PyTorch DDP peer for `smlt-bench train --accuracy`: time to a test accuracy.

The "VM-based" data-parallel baseline: --world processes on this machine (gloo backend, each with
--threads OpenBLAS/torch threads) train one model with DistributedDataParallel on Fashion-MNIST,
SGD with momentum, --per-worker-batch samples per rank (global batch = world x that), an optional
step decay of the learning rate every --lr-decay-epochs epochs (as the C workers do on the shards).
Models as in peer_torch_fmnist.py: mlp 784-256-128-10, cnn LeNet-5 (conv 5x5x6 pad 2, pool,
conv 5x5x16, pool, fc 120, 84, 10), PyTorch's default initialization.

Data: every epoch one permutation of the training set shared by all ranks (same generator
seed); rank r takes every world-th index from r (DistributedSampler's split), in batches.
Clock: rank 0 evaluates the test set every --eval-every steps and at every epoch end; all ranks
stop their clocks around it (barrier, evaluate, barrier), so "train_s" and the time to each
--target count training only, as smlt-worker's "eval" events do. Run it with Debian's
interpreter (/usr/bin/python3 sees python3-torch). OPENBLAS_NUM_THREADS is set to --threads
before torch is imported (torch.set_num_threads does not govern Debian's OpenBLAS threads).

  /usr/bin/python3 tools/peer_torch_ddp_fmnist.py --model mlp --epochs 8 --lr-decay-epochs 4 --json
"""
import argparse
import gzip
import json
import os
import sys
import tempfile
import time

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('--model', choices=['mlp', 'cnn'], default='mlp')
ap.add_argument('--world', type=int, default=2)
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--per-worker-batch', type=int, default=64)
ap.add_argument('--epochs', type=int, default=8)
ap.add_argument('--lr', type=float, default=0.05)
ap.add_argument('--momentum', type=float, default=0.9)
ap.add_argument('--lr-decay-epochs', type=int, default=0, help='multiply lr by --lr-decay every N epochs (0: never)')
ap.add_argument('--lr-decay', type=float, default=0.1)
ap.add_argument('--eval-every', type=int, default=50)
ap.add_argument('--target', type=float, action='append', help='accuracy to time (repeatable; default 0.88)')
ap.add_argument('--seed', type=int, default=0)
ap.add_argument('--data', default='/usr/share/datasets/fashion-mnist')
ap.add_argument('--json', action='store_true', help='print one JSON object at the end')
args = ap.parse_args()
if not args.target:
    args.target = [0.88]
if min(args.world, args.threads, args.per_worker_batch, args.epochs, args.eval_every) < 1:
    ap.error('sizes must be positive')
os.environ['OPENBLAS_NUM_THREADS'] = str(args.threads)
os.environ['OMP_NUM_THREADS'] = str(args.threads)

import numpy as np  # noqa: E402  (after the thread settings on purpose)
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402


def idx_array(path):
    """The unsigned-byte array in an IDX file, plain or gzip-compressed."""
    with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 4 or raw[:3] != b'\x00\x00\x08':
        raise ValueError(f'{path}: not an unsigned-byte IDX file')
    nd = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(nd))
    start = 4 + 4 * nd
    if len(raw) - start != int(np.prod(shape)):
        raise ValueError(f'{path}: size does not match the dimensions {shape}')
    return np.frombuffer(raw, np.uint8, offset=start).reshape(shape)


def split(prefix):
    d = args.data
    x = idx_array(os.path.join(d, f'{prefix}-images-idx3-ubyte.gz'))
    y = idx_array(os.path.join(d, f'{prefix}-labels-idx1-ubyte.gz'))
    return (torch.from_numpy(x.reshape(x.shape[0], -1).astype(np.float32) / 255.0),
            torch.from_numpy(y.astype(np.int64)))


def build(kind):
    if kind == 'mlp':
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                         nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def test_accuracy(model, x, y):
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], 1000):
            right += (model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item()
    model.train()
    return right / x.shape[0]


def run(rank, world, store):
    torch.set_num_threads(args.threads)
    dist.init_process_group('gloo', init_method='file://' + store, rank=rank, world_size=world)
    torch.manual_seed(args.seed)  # the same initial model on every rank (DDP also broadcasts it)
    xtr, ytr = split('train')
    xte, yte = split('t10k') if rank == 0 else (None, None)
    model = build(args.model)
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=args.momentum)
    gen = torch.Generator().manual_seed(args.seed + 1)
    bs, n = args.per_worker_batch, xtr.shape[0]
    train_s, step, samples = 0.0, 0, 0
    hits = {t: None for t in args.target}
    evals = []

    def evaluate():
        dist.barrier()
        acc = None
        if rank == 0:
            acc = test_accuracy(model, xte, yte)
            evals.append((step, round(train_s, 4), acc))
            for t in hits:
                if hits[t] is None and acc >= t:
                    hits[t] = (train_s, step)
        dist.barrier()
        return acc

    acc = None
    for epoch in range(args.epochs):
        if args.lr_decay_epochs and epoch and epoch % args.lr_decay_epochs == 0:
            for g in opt.param_groups:
                g['lr'] *= args.lr_decay
        mine = torch.randperm(n, generator=gen)[rank::world]
        dist.barrier()
        t0 = time.perf_counter()
        for i in range(0, mine.shape[0], bs):
            idx = mine[i:i + bs]
            loss = F.cross_entropy(ddp(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            samples += idx.shape[0]
            last = i + bs >= mine.shape[0]
            if step % args.eval_every == 0 or last:
                train_s += time.perf_counter() - t0
                acc = evaluate()
                t0 = time.perf_counter()
    if rank == 0:
        out = {
            'model': args.model, 'world': world, 'threads': args.threads,
            'per_worker_batch': bs, 'global_batch': bs * world, 'epochs': args.epochs,
            'lr': args.lr, 'momentum': args.momentum, 'lr_decay_epochs': args.lr_decay_epochs,
            'lr_decay': args.lr_decay, 'eval_every': args.eval_every, 'steps': step,
            'train_s': round(train_s, 4),
            'samples_per_s': round(samples * world / train_s, 1),
            'test_accuracy': acc, 'best_test_accuracy': max(e[2] for e in evals),
            'time_to': {f'{t:g}': (None if h is None else round(h[0], 4)) for t, h in hits.items()},
            'steps_to': {f'{t:g}': (None if h is None else h[1]) for t, h in hits.items()},
            'torch': torch.__version__,
        }
        if args.json:
            print(json.dumps(out), flush=True)
        else:
            tt = ', '.join(f'{k}: {v} s' for k, v in out['time_to'].items())
            print(f"torch {out['torch']} DDP gloo {args.model} world {world} x {args.threads} "
                  f"thread(s), global batch {bs * world}: {out['samples_per_s']:.0f} samples/s, "
                  f"test accuracy {acc:.4f} (best {out['best_test_accuracy']:.4f}); time to {tt}",
                  flush=True)
    dist.destroy_process_group()


def main():
    with tempfile.TemporaryDirectory(prefix='smlt-ddp-') as d:
        mp.spawn(run, args=(args.world, os.path.join(d, 'store')), nprocs=args.world, join=True)


if __name__ == '__main__':
    try:
        main()
    except (OSError, ValueError) as e:
        print(f'peer_torch_ddp_fmnist: {e}', file=sys.stderr)
        sys.exit(1)
