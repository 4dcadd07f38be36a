#!/usr/bin/python3
"""SMLT-C's PyTorch DDP peer for `smlt-bench train --torch`: a torch training file (smlt.job's
interface: model(), train_data(dataset), test_data(dataset), optional loss()) trained with
DistributedDataParallel, gloo, --world processes of --threads threads; the time to a test
accuracy.

It is the same training as tools/bench_torch_smlt.py's through the shards, step for step:
  - the initial model: torch.manual_seed(--seed), then model() (what `smlt.job describe`
    writes to the shards); DDP broadcasts rank 0's anyway;
  - the batches: smlt.job's Runner.batch: epoch e's permutation of the training set comes
    from a generator seeded with seed * 1000003 + e, rank r reads the r-th contiguous
    len // world of it, in whole batches of --per-worker-batch (the rest is dropped), so
    both sides take (len // world) // batch steps per epoch on the same samples;
  - the update: torch.optim.SGD with --lr and --momentum on DDP's averaged gradient (the
    shards apply the same momentum SGD to the ranks' averaged gradient);
  - evaluation on the test set every --eval-every steps and at each epoch end; rank 0
    evaluates, every rank stops its clock around it (barrier, evaluate, barrier).

Each rank is its own process (this script with --rank), started and stopped by its pid; they
meet through a file store in a temporary directory. OPENBLAS_NUM_THREADS and OMP_NUM_THREADS
are set to --threads before torch is imported. Prints one JSON line (with --json) from rank 0.

  PYTHONPATH=build/python /usr/bin/python3 tools/peer_torch_ddp_job.py \\
      --model-file worker/python/examples/fmnist_cnn.py --epochs 5 --json
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--model-file", required=True)
ap.add_argument("--world", type=int, default=2)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--per-worker-batch", type=int, default=64)
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--lr", type=float, default=0.05)
ap.add_argument("--momentum", type=float, default=0.9)
ap.add_argument("--eval-every", type=int, default=100)
ap.add_argument("--target", type=float, default=0.90)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
ap.add_argument("--json", action="store_true")
ap.add_argument("--rank", type=int, default=-1, help=argparse.SUPPRESS)
ap.add_argument("--store", help=argparse.SUPPRESS)
args = ap.parse_args()
if min(args.world, args.threads, args.per_worker_batch, args.epochs, args.eval_every) < 1:
    ap.error("sizes must be positive")
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)


def launch():
    """Starts the ranks, waits for them, stops any left (by pid) when one fails."""
    with tempfile.TemporaryDirectory(prefix="smlt-ddp-") as d:
        argv = [a for a in sys.argv[1:]]
        procs = []
        try:
            for r in range(args.world):
                procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__)] + argv +
                                              ["--rank", str(r), "--store",
                                               os.path.join(d, "store")],
                                              stdout=None if r == 0 else subprocess.DEVNULL))
            rc = 0
            pending = list(procs)
            while pending and rc == 0:
                for p in list(pending):
                    if p.poll() is not None:
                        pending.remove(p)
                        rc = rc or p.returncode
                time.sleep(0.05)
            return rc
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()


def rank_main(rank):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(args.threads)
    spec = importlib.util.spec_from_file_location("ddp_training_file", args.model_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    loss_fn = getattr(mod, "loss", None) or torch.nn.functional.cross_entropy
    predict = getattr(mod, "predict", None) or (lambda o: o.argmax(1))
    dist.init_process_group("gloo", init_method="file://" + args.store, rank=rank,
                            world_size=args.world)
    torch.manual_seed(args.seed)
    model = mod.model()
    xtr, ytr = mod.train_data(args.data)
    xte, yte = mod.test_data(args.data) if rank == 0 else (None, None)
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=args.momentum)
    bs = args.per_worker_batch
    per = len(xtr) // args.world
    spe = per // bs
    train_s, step, samples = 0.0, 0, 0
    evals = []

    def evaluate():
        dist.barrier()
        if rank == 0:
            model.eval()
            right = 0
            with torch.no_grad():
                for i in range(0, len(xte), 1000):
                    right += int((predict(model(xte[i:i + 1000])) == yte[i:i + 1000]).sum())
            model.train()
            evals.append((step, train_s, right / len(xte)))
        dist.barrier()

    for epoch in range(args.epochs):
        g = torch.Generator()
        g.manual_seed((args.seed * 1000003 + epoch) & 0x7FFFFFFFFFFFFFFF)
        part = torch.randperm(len(xtr), generator=g)[rank * per:(rank + 1) * per]
        dist.barrier()
        t0 = time.perf_counter()
        for b in range(spe):
            idx = part[b * bs:(b + 1) * bs]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(ddp(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            step += 1
            samples += len(idx)
            if step % args.eval_every == 0 or b == spe - 1:
                train_s += time.perf_counter() - t0
                evaluate()
                t0 = time.perf_counter()
    if rank == 0:
        hit = next((e for e in evals if e[2] >= args.target), None)
        out = {
            "side": "ddp", "model_file": os.path.basename(args.model_file),
            "params": sum(p.numel() for p in model.parameters()), "world": args.world,
            "threads": args.threads, "batch": bs, "epochs": args.epochs, "steps": step,
            "eval_every": args.eval_every, "target": args.target,
            "time_to_target_s": None if hit is None else round(hit[1], 4),
            "steps_to_target": None if hit is None else hit[0],
            "train_s": round(train_s, 4),
            "samples_per_s": round(samples * args.world / train_s, 1),
            "test_accuracy": evals[-1][2], "best_test_accuracy": max(e[2] for e in evals),
            "evals": [[e[0], round(e[1], 3), e[2]] for e in evals],
            "torch": torch.__version__,
        }
        if args.json:
            print(json.dumps(out), flush=True)
        else:
            print("DDP gloo %d x %d thread(s), %s: %.0f samples/s, test accuracy %.4f (best "
                  "%.4f); %.0f%% after %s" % (
                      args.world, args.threads, out["model_file"], out["samples_per_s"],
                      out["test_accuracy"], out["best_test_accuracy"], 100 * args.target,
                      "not reached" if hit is None else "%.2f s (step %d)" % (hit[1], hit[0])),
                  flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(rank_main(args.rank) if args.rank >= 0 else launch())
    except (OSError, ValueError) as e:
        print("peer_torch_ddp_job: %s" % e, file=sys.stderr)
        sys.exit(1)
