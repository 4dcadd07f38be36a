#!/usr/bin/python3
"""Only the parameter server: a torch model trained through running smlt-ps shards, no
coordinator, no job file. Every rank is this script; you start the shards and the ranks.

Two shards (any free ports; here the kernel picks them and --port-file tells which):

    build/bin/smlt-ps --listen 127.0.0.1:0 --shard 0 --token T --admin-token A --port-file /tmp/p0 &
    build/bin/smlt-ps --listen 127.0.0.1:0 --shard 1 --token T --admin-token A --port-file /tmp/p1 &
    ADDRS=127.0.0.1:$(cat /tmp/p0),127.0.0.1:$(cat /tmp/p1)

Two ranks (rank 0 sets the job up on the shards: the model's tensors, BSP for 2 workers,
momentum SGD applied by the shards, and its initial parameters; rank 1 waits for that):

    export PYTHONPATH=build/python
    python3 worker/python/examples/ps_only.py --addrs $ADDRS --token T --admin-token A \\
        --rank 0 --workers 2 --setup &
    python3 worker/python/examples/ps_only.py --addrs $ADDRS --token T --rank 1 --workers 2

Each step a rank computes the gradient of its own batch and smlt.torch.DistributedOptimizer
pushes it and pulls the updated model (one Client.sync: every shard in flight at once); the
shards average the ranks' gradients and apply the optimizer. Rank 0 prints the test accuracy
after every epoch. Stop the shards with kill (by their pids) when done.

--addrs names every shard, in shard order (the order of their --shard ids). Every rank builds
the same initial model from --seed; a rank that does not set up the job waits until the
shards hold exactly that model (or the job is already past step 0), so no rank computes a
gradient on a model that is not the job's."""
import argparse
import os
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--addrs", required=True, help="every shard's host:port, comma-separated, in shard order")
ap.add_argument("--token", required=True, help="the job token (the shards' --token)")
ap.add_argument("--admin-token", help="the shards' --admin-token (needed with --setup)")
ap.add_argument("--rank", type=int, default=0)
ap.add_argument("--workers", type=int, default=1)
ap.add_argument("--setup", action="store_true", help="set up the job on the shards (one rank)")
ap.add_argument("--epochs", type=int, default=3)
ap.add_argument("--batch", type=int, default=64, help="per rank")
ap.add_argument("--lr", type=float, default=0.05)
ap.add_argument("--momentum", type=float, default=0.9)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--threads", type=int, default=1, help="torch (and OpenBLAS) threads")
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
ap.add_argument("--wait", type=float, default=120, help="seconds to wait for the job's setup")
args = ap.parse_args()
if not 0 <= args.rank < args.workers:
    ap.error("--rank must be in [0, --workers)")
if args.setup and not args.admin_token:
    ap.error("--setup needs --admin-token")
# Before torch is imported: Debian's torch multiplies in OpenBLAS, which reads these.
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)

import torch  # noqa: E402
from torch import nn  # noqa: E402

import smlt  # noqa: E402
import smlt.torch  # noqa: E402
from smlt.data import idx_split  # noqa: E402


def build_model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def connect_when_ready(model):
    """A Client once the job is set up and holds the initial model (or has started)."""
    mine, _ = smlt.torch.flatten(model)
    theirs = torch.empty_like(mine)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            c = smlt.Client(args.addrs, args.token, rank=args.rank)
            if c.num_params == mine.numel():
                if c.pull(theirs) > 0 or torch.equal(theirs, mine):
                    return c
            c.close()
        except smlt.Error as e:
            # not set up yet, set up on some shards only, or a shard not listening yet
            if e.code not in (smlt.ENOTCONF, smlt.ESTALEMAP, smlt.EAGAIN, smlt.EIO,
                              smlt.ECLOSED):
                raise
        if time.monotonic() > deadline:
            sys.exit("rank %d: the job was not set up on %s within %g s (start one rank with "
                     "--setup)" % (args.rank, args.addrs, args.wait))
        time.sleep(0.2)


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        right = sum(int((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum())
                    for i in range(0, len(x), 1000))
    model.train()
    return right / len(x)


def main():
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the same initial model on every rank
    model = build_model()
    xtr, ytr = idx_split(args.data, "train")
    xte, yte = idx_split(args.data, "t10k") if args.rank == 0 else (None, None)
    if args.setup:
        smlt.torch.setup(args.addrs, args.admin_token, model, sync="bsp", workers=args.workers,
                         optim="momentum", lr=args.lr, momentum=args.momentum).close()
    client = connect_when_ready(model)
    opt = smlt.torch.DistributedOptimizer(model, client)
    # Every rank must take the same number of steps per epoch (BSP waits for all of them):
    # rank r reads every workers-th sample of the epoch's shared permutation, whole batches.
    steps = (len(xtr) // args.workers) // args.batch
    print("rank %d: %d parameters on %d shard(s), %d steps per epoch, starting at step %d"
          % (args.rank, client.num_params, client.num_shards, steps, opt.step_count), flush=True)
    t0 = time.monotonic()
    for epoch in range(args.epochs):
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        part = torch.randperm(len(xtr), generator=g)[args.rank::args.workers]
        loss_sum = 0.0
        for b in range(steps):
            idx = part[b * args.batch:(b + 1) * args.batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            loss_sum += float(loss)
        line = "rank %d epoch %d: step %d, mean loss %.4f, %.1f s" % (
            args.rank, epoch + 1, opt.step_count, loss_sum / steps, time.monotonic() - t0)
        if args.rank == 0:
            line += ", test accuracy %.4f" % accuracy(model, xte, yte)
        print(line, flush=True)
    client.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except smlt.Error as e:
        sys.exit("rank %d: %s" % (args.rank, e))
