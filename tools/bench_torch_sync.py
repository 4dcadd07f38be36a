#!/usr/bin/python3
"""The Python half of `smlt-bench train --torch`'s binding cost: BSP syncs from Python
(smlt.Client.sync on smlt.torch's flat torch buffers), timed in rounds that smlt-bench
interleaves with its own rounds of smlt_sync from C on the same shards and the same job.

It sets the job up (--addrs, --admin-token) with the tensors of the training file's model
(--model-file: smlt.torch.setup, BSP, one worker, plain SGD at a small rate so the model stays
finite), fills the flat gradient with dense noise (a sample of zeros would make the client
lz4-compress it), and prints {"ready": 1, "params": N, "tensors": K}. Then for each line
"run N" on stdin it pulls the model (untimed: it learns the clock, which the C client moved),
times N syncs and prints {"steps": N, "s": seconds, "first_step": S}. It ends at the end of
its input. "wrap_us" in the ready line is the Python layer's own work per sync (the two torch
tensors made buffers: Client._view), timed without the network."""
import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--model-file", required=True)
ap.add_argument("--addrs", required=True)
ap.add_argument("--token", required=True)
ap.add_argument("--admin-token", required=True)
ap.add_argument("--lr", type=float, default=1e-4)
ap.add_argument("--seed", type=int, default=1)
args = ap.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"

import torch  # noqa: E402

import smlt  # noqa: E402
import smlt.job  # noqa: E402
import smlt.torch  # noqa: E402


def main():
    torch.set_num_threads(1)
    model = smlt.job.build_model(smlt.job.load(args.model_file), args.seed)
    smlt.torch.setup(args.addrs, args.admin_token, model, sync="bsp", workers=1, optim="sgd",
                     lr=args.lr).close()
    params, grads = smlt.torch.flatten(model)
    g = torch.Generator().manual_seed(args.seed)
    grads.copy_(torch.randn(grads.numel(), generator=g) * 1e-3)
    with smlt.Client(args.addrs, args.token, rank=0) as c:
        # What the Python layer of Client.sync does before the C call (the two torch tensors
        # made buffers: Client._view), without the network: a part of the binding's cost.
        wrap_us = None
        if hasattr(c, "_view"):
            k = 20000
            t0 = time.perf_counter()
            for _ in range(k):
                c._view(grads, "sync")
                c._view(params, "sync")
            wrap_us = round(1e6 * (time.perf_counter() - t0) / k, 3)
        print(json.dumps({"ready": 1, "params": c.num_params, "tensors": len(c.tensors()),
                          "wrap_us": wrap_us}), flush=True)
        for line in sys.stdin:
            parts = line.split()
            if len(parts) != 2 or parts[0] != "run":
                continue
            n = int(parts[1])
            s0 = step = c.pull(params)
            t0 = time.perf_counter()
            for _ in range(n):
                c.sync(step, grads, params)
                step += 1
            dt = time.perf_counter() - t0
            print(json.dumps({"steps": n, "s": dt, "first_step": s0}), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except smlt.Error as e:
        sys.exit("bench_torch_sync: %s" % e)
