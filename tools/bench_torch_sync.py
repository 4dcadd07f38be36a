#!/usr/bin/python3
"""The Python half of `smlt-bench train --torch`'s binding cost: BSP syncs from Python
(smlt.Client.sync on smlt.torch's flat torch buffers), timed in rounds that smlt-bench
interleaves with its own rounds of smlt_sync from C on the same shards and the same job.

It sets the job up (--addrs, --admin-token) with the tensors of the training file's model
(--model-file: smlt.torch.setup, BSP, one worker, plain SGD at a small rate so the model stays
finite), fills the flat gradient with dense noise (a sample of zeros would make the client
lz4-compress it), and prints {"ready": 1, "params": N, "tensors": K}. Then for each line
"run N" on stdin it pulls the model (untimed: it learns the clock, which the C client moved),
times N syncs and prints {"steps": N, "s": seconds, "first_step": S}. "ctypes N" does the
same through ctypes instead of the extension: libsmlt's smlt_pull and smlt_sync called on the
same torch buffers (their data_ptr() per call, as a ctypes binding has to), with a client of
its own: the other way the package could have been built, measured in the same run. It ends
at the end of its input. "wrap_us" in the ready line is the Python layer's own work per sync
(the two torch tensors made buffers: Client._view), timed without the network."""
import argparse
import ctypes
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


class _Opts(ctypes.Structure):
    """struct smlt_client_opts (worker/include/smlt.h)."""
    _fields_ = [("token", ctypes.c_char_p), ("admin", ctypes.c_int), ("worker", ctypes.c_uint32),
                ("timeout_ms", ctypes.c_int), ("retries", ctypes.c_int),
                ("no_compress", ctypes.c_int), ("tls", ctypes.c_int),
                ("tls_ca", ctypes.c_char_p), ("tls_ca_pem", ctypes.c_char_p),
                ("tls_cert", ctypes.c_char_p), ("tls_key", ctypes.c_char_p)]


def ctypes_client():
    """libsmlt through ctypes (the library the extension loaded): (lib, client)."""
    lib = ctypes.CDLL("libsmlt.so.0")
    p, u64, vp = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p
    lib.smlt_client_connect.argtypes = [ctypes.POINTER(p), ctypes.c_char_p,
                                        ctypes.POINTER(_Opts), ctypes.c_char_p, ctypes.c_size_t]
    lib.smlt_client_close.argtypes = [p]
    lib.smlt_client_errmsg.argtypes = [p]
    lib.smlt_client_errmsg.restype = ctypes.c_char_p
    lib.smlt_pull.argtypes = [p, u64, ctypes.c_int, vp, ctypes.POINTER(u64)]
    lib.smlt_sync.argtypes = [p, u64, vp, vp, ctypes.POINTER(u64)]
    c, err = p(), ctypes.create_string_buffer(256)
    opts = _Opts(token=args.token.encode(), worker=0, timeout_ms=60000)
    if lib.smlt_client_connect(ctypes.byref(c), args.addrs.encode(), ctypes.byref(opts), err,
                               len(err)) != 0:
        raise RuntimeError("ctypes connect: " + err.value.decode())
    return lib, c


def ctypes_run(lib, c, n, grads, params):
    """n syncs through ctypes from the current clock: (seconds, first step)."""
    clock = ctypes.c_uint64(0)
    if lib.smlt_pull(c, 0, 0, params.data_ptr(), ctypes.byref(clock)) != 0:
        raise RuntimeError("ctypes pull: " + lib.smlt_client_errmsg(c).decode())
    s0 = clock.value
    t0 = time.perf_counter()
    for _ in range(n):
        if lib.smlt_sync(c, clock.value, grads.data_ptr(), params.data_ptr(),
                         ctypes.byref(clock)) != 0:
            raise RuntimeError("ctypes sync: " + lib.smlt_client_errmsg(c).decode())
    return time.perf_counter() - t0, s0


def main():
    torch.set_num_threads(1)
    model = smlt.job.build_model(smlt.job.load(args.model_file), args.seed)
    smlt.torch.setup(args.addrs, args.admin_token, model, sync="bsp", workers=1, optim="sgd",
                     lr=args.lr).close()
    params, grads = smlt.torch.flatten(model)
    g = torch.Generator().manual_seed(args.seed)
    grads.copy_(torch.randn(grads.numel(), generator=g) * 1e-3)
    lib, cc = ctypes_client()
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
            if len(parts) != 2 or parts[0] not in ("run", "ctypes"):
                continue
            n = int(parts[1])
            if parts[0] == "ctypes":
                dt, s0 = ctypes_run(lib, cc, n, grads, params)
                print(json.dumps({"steps": n, "s": dt, "first_step": s0}), flush=True)
                continue
            s0 = step = c.pull(params)
            t0 = time.perf_counter()
            for _ in range(n):
                c.sync(step, grads, params)
                step += 1
            dt = time.perf_counter() - t0
            print(json.dumps({"steps": n, "s": dt, "first_step": s0}), flush=True)
    lib.smlt_client_close(cc)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (smlt.Error, RuntimeError) as e:
        sys.exit("bench_torch_sync: %s" % e)
