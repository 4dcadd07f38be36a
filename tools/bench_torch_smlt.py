#!/usr/bin/python3
"""SMLT-C's side of `smlt-bench train --torch`: a torch training file (smlt.job's interface)
trained through running smlt-ps shards by --workers `python3 -m smlt.job serve` processes, the
runner a worker function runs, under BSP; the time to a test accuracy.

It sets the job up on the shards (--addrs, every shard in order; --admin-token) with the
model of the training file built exactly as `smlt.job describe` builds it (torch.manual_seed
(--seed), then model()): BSP for --workers ranks, momentum SGD on the shards. Then it starts
one `python3 -m smlt.job serve` per rank (1 torch thread each, OPENBLAS_NUM_THREADS=1), writes
each its task (one JSON line: the whole run, --epochs epochs, evaluation every --eval-every
steps and at each epoch end), and reads every rank's stdout until its "done" line (a rank
whose pipe fills would block, and BSP would stop them all).

Clock: the runner reports elapsed, init (loading, connecting) and evaluation seconds; rank
0's training time at an evaluation is elapsed - init - eval. Every rank evaluates at the same
steps, not rank 0 alone, so no rank computes while another evaluates (the DDP peer stops all
ranks with barriers around rank 0's evaluation); the runner counts the first exchange after an
evaluation, which waits for the other rank's evaluation, as evaluation time, as those barriers
make it for DDP. Rank 0's accuracies are the ones reported.

Prints one JSON line. Every process it starts is stopped by its pid."""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--model-file", required=True)
ap.add_argument("--addrs", required=True)
ap.add_argument("--token", required=True)
ap.add_argument("--admin-token", required=True)
ap.add_argument("--workers", type=int, default=2)
ap.add_argument("--batch", type=int, default=64, help="per worker")
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: --epochs)")
ap.add_argument("--lr", type=float, default=0.05)
ap.add_argument("--momentum", type=float, default=0.9)
ap.add_argument("--eval-every", type=int, default=100)
ap.add_argument("--target", type=float, default=0.90)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
ap.add_argument("--timeout", type=float, default=3600, help="seconds for the whole run")
ap.add_argument("--verbose", action="store_true", help="print each evaluation on stderr")
args = ap.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"

import smlt  # noqa: E402
import smlt.job  # noqa: E402
import smlt.torch  # noqa: E402


def setup():
    """The job on the shards, starting from describe's model (the serve ranks build the same
    one from the same seed and then pull it). Returns (parameters, total steps)."""
    mod = smlt.job.load(args.model_file)
    m = smlt.job.build_model(mod, args.seed)
    c = smlt.torch.setup(args.addrs, args.admin_token, m, sync="bsp", workers=args.workers,
                         optim="momentum", lr=args.lr, momentum=args.momentum, seed=args.seed)
    n = c.num_params
    c.close()
    # The task names the job's last step; a rank's steps per epoch are the runner's:
    # (samples // workers) // batch.
    spe = (len(mod.train_data(args.data)[0]) // args.workers) // args.batch
    return n, spe * args.epochs


def reader(p, rank, reports, errors):
    """Reads rank's stdout up to its "done" line (or the end): progress and done lines into
    reports[rank]."""
    try:
        for line in p.stdout:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            reports[rank].append(m)
            if "done" in m:
                return
    except Exception as e:  # the pipe broke: the rank died; main() sees its exit status
        errors.append("rank %d: %s" % (rank, e))


def main():
    t_wall = time.monotonic()
    params, total = setup()
    env = dict(os.environ, SMLT_TORCH_THREADS="1", OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    procs, threads = [], []
    reports = [[] for _ in range(args.workers)]
    errors = []
    try:
        for r in range(args.workers):
            p = subprocess.Popen([sys.executable, "-m", "smlt.job", "serve"], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            procs.append(p)
            th = threading.Thread(target=reader, args=(p, r, reports, errors), daemon=True)
            th.start()
            threads.append(th)
        for r, p in enumerate(procs):
            task = {"model_file": os.path.abspath(args.model_file), "data": args.data,
                    "batch": args.batch, "sync": smlt.job.SYNC_BSP, "rank": r,
                    "workers": args.workers, "seed": args.seed, "ps_addrs": args.addrs,
                    "token": args.token, "start_step": 0, "max_steps": args.max_steps,
                    "total_steps": total,
                    "epochs": args.epochs, "deadline": 0, "evaluate": True,
                    "eval_every": args.eval_every, "lr": args.lr, "timeout_ms": 120000}
            p.stdin.write((json.dumps(task) + "\n").encode())
            p.stdin.flush()
        deadline = time.monotonic() + args.timeout
        for th in threads:
            th.join(max(1.0, deadline - time.monotonic()))
        for p in procs:
            p.stdin.close()  # serve() returns at the end of its input
            try:
                p.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    dones = []
    for r in range(args.workers):
        d = [m["done"] for m in reports[r] if "done" in m]
        if not d:
            sys.exit("bench_torch_smlt: rank %d ended without a report (exit %s) %s"
                     % (r, procs[r].returncode, "; ".join(errors)))
        if d[-1]["status"] not in (smlt.job.WORKER_DONE, smlt.job.WORKER_SLICE_END):
            sys.exit("bench_torch_smlt: rank %d failed: %s" % (r, d[-1].get("err")))
        dones.append(d[-1])
    # Rank 0's evaluations: the first progress report of each eval_step.
    evals, seen = [], set()
    for m in reports[0]:
        pr = m.get("progress") or m.get("done")
        if not pr or not pr.get("eval_step") or pr["eval_step"] in seen:
            continue
        seen.add(pr["eval_step"])
        train_s = pr["elapsed_s"] - pr["init_s"] - pr["eval_s"]
        evals.append((pr["eval_step"], train_s, pr["test_acc"]))
        if args.verbose:
            print("step %d: %.2f s, test accuracy %.4f" % evals[-1], file=sys.stderr)
    hit = next((e for e in evals if e[2] >= args.target), None)
    d0 = dones[0]
    steps = d0["steps"]
    train_s = d0["elapsed_s"] - d0["init_s"] - d0["eval_s"]
    out = {
        "side": "smlt", "model_file": os.path.basename(args.model_file), "params": params,
        "workers": args.workers, "batch": args.batch, "epochs": args.epochs, "steps": steps,
        "eval_every": args.eval_every, "target": args.target,
        "time_to_target_s": None if hit is None else round(hit[1], 4),
        "steps_to_target": None if hit is None else hit[0],
        "train_s": round(train_s, 4),
        "samples_per_s": round(d0["samples"] * args.workers / train_s, 1) if train_s > 0 else 0,
        "test_accuracy": evals[-1][2] if evals else None,
        "best_test_accuracy": max(e[2] for e in evals) if evals else None,
        "compute_ms_per_step": [round(1e3 * d["compute_s"] / max(d["steps"], 1), 3) for d in dones],
        "comm_ms_per_step": [round(1e3 * d["comm_s"] / max(d["steps"], 1), 3) for d in dones],
        "init_s": [round(d["init_s"], 3) for d in dones],
        "evals": [[e[0], round(e[1], 3), e[2]] for e in evals],
        "wall_s": round(time.monotonic() - t_wall, 2),
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except smlt.Error as e:
        sys.exit("bench_torch_smlt: %s" % e)
