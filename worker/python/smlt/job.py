"""smlt.job: torch jobs run by the coordinator ("model": "python:FILE.py").

The training file (FILE.py) defines, at module level:

    def model():                 -> torch.nn.Module (float32, CPU). Required.
    def train_data(dataset):     -> (x, y): the whole training set, x a float tensor whose first
                                    dimension is the sample, y int64 labels. Required. dataset
                                    is the job spec's "dataset" string.
    def test_data(dataset):      -> (x, y) or None. Optional: without it, no evaluation.
    def loss(output, y):         -> a scalar tensor. Optional: cross entropy by default.
    def predict(output):         -> predicted labels. Optional: output.argmax(1) by default.

model() is called on every rank with the same seed, and the coordinator sets up the shards
with the parameters of one such call (describe), so the file needs no seeding of its own.
Everything else (which batch a step reads, the learning rate, the optimizer, the sync mode,
when to stop) is the job's, as for the built-in models: step s of rank r reads batch
(s - step_base) mod spe of epoch epoch_base + (s - step_base) / spe of r's partition, the
partition being a seeded shuffle of the training set per epoch; spe = (N // workers) // batch.

Two entry points, run by the worker bootstrap (smlt-worker) and the coordinator:
    python3 -m smlt.job describe FILE OUT [SEED]   writes the model's tensors and initial
        values to OUT (a model file) and prints {"params": N, "tensors": K} on stdout.
    python3 -m smlt.job serve                       trains slices: one JSON task per line on
        stdin, JSON lines back on the descriptor the bootstrap passes (SMLT_JOB_FD, default
        stdout; anything the training file prints goes to stderr). A "stop" line on stdin ends
        the current slice after its step. The process stays up between slices (warm starts
        keep the model, the data and the connections).
"""
import importlib.util
import json
import os
import select
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

WORKER_DONE, WORKER_SLICE_END, WORKER_TIME_UP, WORKER_FAILED = 0, 1, 2, 3
SYNC_BSP, SYNC_SSP, SYNC_ASP = 0, 1, 2
EVAL_BATCH = 1000


def load(path):
    """The training file as a module, checked for model() and train_data()."""
    name = "smlt_user_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ValueError("%s: not a Python file" % path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for fn in ("model", "train_data"):
        if not callable(getattr(mod, fn, None)):
            raise ValueError("%s defines no %s() (see smlt.job: the training file's interface)"
                             % (path, fn))
    return mod


def build_model(mod, seed):
    import torch
    torch.manual_seed(seed)
    m = mod.model()
    if not isinstance(m, torch.nn.Module):
        raise ValueError("model() returned %s, not a torch.nn.Module" % type(m).__name__)
    if not list(m.parameters()):
        raise ValueError("model() has no parameters")
    return m


def describe(path, out, seed=1):
    import smlt
    import smlt.torch as st
    m = build_model(load(path), seed)
    flat, _ = st.flatten(m)
    lay = st.layout(m)
    smlt.model_write(out, lay, flat, job=os.path.basename(path), step=0)
    return {"params": int(flat.numel()), "tensors": len(lay)}


class Runner:
    """A warm worker's state: the training file, model, data and shard connection, kept
    between slices while the task's file, dataset, rank and shards stay the same."""

    def __init__(self):
        self.key = None
        self.data_key = None
        self.client_key = None
        self.client = None
        self.mod = None
        self.test = None

    def prepare(self, t, rep):
        import torch
        import smlt
        import smlt.torch as st
        key = (t["model_file"], t.get("model_sig", ""), t.get("seed", 1))
        if key != self.key:
            rep["cold"] = 1
            self.mod = load(t["model_file"])
            self.model = build_model(self.mod, t.get("seed", 1))
            self.params, self.grads = st.flatten(self.model)
            self.loss_fn = getattr(self.mod, "loss", None) or torch.nn.functional.cross_entropy
            self.predict = getattr(self.mod, "predict", None) or (lambda o: o.argmax(1))
            self.key = key
            self.data_key = None
            self.client_key = None
        dkey = (t["data"], key)
        if dkey != self.data_key or (t.get("evaluate") and self.test is None and
                                     callable(getattr(self.mod, "test_data", None))):
            rep["cold"] = 1
            self.x, self.y = self.mod.train_data(t["data"])
            if len(self.x) != len(self.y) or len(self.x) == 0:
                raise ValueError("train_data() gave %d samples and %d labels"
                                 % (len(self.x), len(self.y)))
            self.test = None
            if t.get("evaluate") and callable(getattr(self.mod, "test_data", None)):
                self.test = self.mod.test_data(t["data"])
            self.data_key = dkey
            self.perm_epoch = None
        tls = t.get("tls") or {}
        ckey = (t["ps_addrs"], t["token"], t["rank"], json.dumps(tls, sort_keys=True), key)
        if ckey != self.client_key:
            rep["cold"] = 1
            if self.client is not None:
                self.client.close()
                self.client = None
            self.client = smlt.Client(t["ps_addrs"], t["token"], rank=t["rank"],
                                      timeout_ms=t.get("timeout_ms") or 60000,
                                      tls=bool(tls.get("on")), tls_ca=tls.get("ca"),
                                      tls_ca_pem=tls.get("ca_pem"), tls_cert=tls.get("cert"),
                                      tls_key=tls.get("key"))
            theirs = self.client.tensors()
            mine = st.layout(self.model)
            if [n for n, *_ in theirs] != [n for n, _ in mine] or \
                    self.client.num_params != self.params.numel():
                raise ValueError("the job on the shards has tensors %s (%d parameters), the "
                                 "model %s (%d)" % ([n for n, *_ in theirs][:4],
                                                    self.client.num_params,
                                                    [n for n, _ in mine][:4],
                                                    self.params.numel()))
            self.client_key = ckey

    def batch(self, t, spe, s):
        """The indices of step s's batch for this rank."""
        import torch
        local = s - t.get("step_base", 0)
        epoch = t.get("epoch_base", 0) + local // spe
        b = local % spe
        if self.perm_epoch != (epoch, t["rank"], t["workers"]):
            g = torch.Generator()
            g.manual_seed((t.get("seed", 1) * 1000003 + epoch) & 0x7FFFFFFFFFFFFFFF)
            perm = torch.randperm(len(self.x), generator=g)
            per = len(self.x) // t["workers"]
            self.part = perm[t["rank"] * per:(t["rank"] + 1) * per]
            self.perm_epoch = (epoch, t["rank"], t["workers"])
        return self.part[b * t["batch"]:(b + 1) * t["batch"]]

    def evaluate(self):
        import torch
        x, y = self.test
        self.model.eval()
        correct, total, loss = 0, 0, 0.0
        with torch.no_grad():
            for i in range(0, len(x), EVAL_BATCH):
                out = self.model(x[i:i + EVAL_BATCH])
                yy = y[i:i + EVAL_BATCH]
                loss += float(self.loss_fn(out, yy)) * len(yy)
                correct += int((self.predict(out) == yy).sum())
                total += len(yy)
        self.model.train()
        return correct / max(total, 1), loss / max(total, 1)

    def run(self, t, emit, stop_requested):
        """Trains the slice t; emit(report) after each step; returns the final report."""
        import torch
        import smlt
        t0 = time.monotonic()
        rep = {"status": WORKER_DONE, "err_code": 0, "err": "", "next_step": t["start_step"],
               "steps": 0, "samples": 0, "loss": 0.0, "compute_s": 0.0, "comm_s": 0.0,
               "init_s": 0.0, "eval_s": 0.0, "elapsed_s": 0.0, "cold": 0, "eval_epoch": -1,
               "test_acc": 0.0, "test_loss": 0.0, "steps_per_epoch": 0, "eval_step": 0}

        def fail(code, msg):
            rep.update(status=WORKER_FAILED, err_code=code, err=msg[:250],
                       elapsed_s=time.monotonic() - t0)
            return rep

        try:
            self.prepare(t, rep)
        except smlt.Error as e:
            return fail(e.code, "parameter server %s: %s" % (t["ps_addrs"], e.message))
        except Exception as e:  # the training file's own error: say which
            return fail(smlt.EINVAL, "%s: %s: %s" % (os.path.basename(t["model_file"]),
                                                      type(e).__name__, e))
        rep["init_s"] = time.monotonic() - t0
        c = self.client
        n = len(self.x)
        spe = (n // t["workers"]) // t["batch"]
        rep["steps_per_epoch"] = spe
        if spe == 0:
            return fail(smlt.EINVAL, "%d rows over %d workers give no full batch of %d"
                        % (n, t["workers"], t["batch"]))
        total = t["total_steps"]  # the job ends there (a sizing probe: total == start)
        s = t["start_step"]
        end = total
        if t.get("max_steps") and s + t["max_steps"] < end:
            end = s + t["max_steps"]
        deadline = t.get("deadline") or 0
        sync = t.get("sync", SYNC_BSP)
        stal = t.get("staleness", 0)
        wait_ms = t.get("timeout_ms") or 60000

        def need(step):
            if sync == SYNC_BSP:
                return step
            if sync == SYNC_SSP:
                return max(0, step - stal)
            return 0

        def over(e):
            return e.code == smlt.ETIMEDOUT and deadline > 0 and time.monotonic() >= deadline

        def call_wait():
            if deadline <= 0:
                return wait_ms
            return max(1, min(wait_ms, int((deadline + 1.0 - time.monotonic()) * 1000)))

        tc = time.monotonic()
        try:
            c.pull(self.params, need(s), call_wait())
        except smlt.Error as e:
            if over(e):
                rep.update(status=WORKER_TIME_UP, elapsed_s=time.monotonic() - t0)
                return rep
            return fail(e.code, "initial pull: %s" % e.message)
        rep["comm_s"] += time.monotonic() - tc
        loss_sum, loss_n, prev_loss, step_ema = 0.0, 0, -1.0, 0.0
        time_up = stop = after_eval = False
        model, x, y = self.model, self.x, self.y
        lr_step = t.get("lr_decay_step", 0)
        while s < end and not stop:
            ts = time.monotonic()
            if deadline > 0 and ts + 2.0 * step_ema + 0.05 > deadline:
                time_up = True
                break
            if lr_step and t["rank"] == 0 and s >= lr_step and (s % lr_step == 0 or
                                                                  s == t["start_step"]):
                lr = t["lr"] * (t["lr_decay"] ** (s // lr_step))
                try:
                    c.update_conf(lr=lr)
                except smlt.Error as e:
                    return fail(e.code, "step %d: setting the learning rate: %s" % (s, e.message))
            idx = self.batch(t, spe, s)
            self.grads.zero_()
            out = model(x[idx])
            loss = self.loss_fn(out, y[idx])
            loss.backward()
            lv = float(loss)
            if t.get("chaos_delay_us"):
                time.sleep(t["chaos_delay_us"] / 1e6)
            tb = time.monotonic()
            rep["compute_s"] += tb - ts
            try:
                if sync == SYNC_BSP:
                    c.sync(s, self.grads, self.params)
                else:
                    c.push(s, self.grads)
                    c.pull(self.params, need(s + 1), call_wait())
            except smlt.Error as e:
                tn = time.monotonic()
                if e.code == smlt.ECANCELED:
                    rep["compute_s"] -= tb - ts
                    break
                if over(e):
                    rep["compute_s"] -= tb - ts
                    time_up = True
                    break
                if e.code == smlt.ESTEP:
                    try:
                        clock = c.pull(self.params, 0, call_wait())
                    except smlt.Error as e2:
                        return fail(e2.code, "step %d: %s" % (s, e2.message))
                    if clock > s:
                        s = clock
                        continue
                return fail(e.code, "step %d: %s" % (s, e.message))
            if after_eval:
                # The first exchange after an evaluation waits for the other ranks' own
                # evaluations: that is evaluation time, as DDP's barriers around it make it.
                rep["eval_s"] += time.monotonic() - tb
                after_eval = False
            else:
                rep["comm_s"] += time.monotonic() - tb
            s += 1
            rep["steps"] += 1
            rep["samples"] += len(idx)
            loss_sum += lv
            loss_n += 1
            if prev_loss < 0 or loss_n * 10 >= spe:
                rep["loss"] = loss_sum / loss_n
            dt = time.monotonic() - ts
            step_ema = dt if step_ema == 0 else 0.8 * step_ema + 0.2 * dt
            rep["next_step"] = s
            epoch_end = (s - t.get("step_base", 0)) % spe == 0
            ev = t.get("eval_every", 0)
            if t.get("evaluate") and self.test is not None and (epoch_end or (ev and s % ev == 0)):
                te = time.monotonic()
                rep["test_acc"], rep["test_loss"] = self.evaluate()
                rep["eval_s"] += time.monotonic() - te
                rep["eval_step"] = s
                after_eval = t["workers"] > 1
                if epoch_end:
                    rep["eval_epoch"] = t.get("epoch_base", 0) + (s - t.get("step_base", 0)) // spe - 1
            if epoch_end:
                prev_loss = loss_sum / loss_n
                rep["loss"] = prev_loss
                loss_sum, loss_n = 0.0, 0
            if t.get("stop_at_epoch_end") and epoch_end:
                stop = True
            rep["elapsed_s"] = time.monotonic() - t0
            emit(rep)
            if stop_requested():
                stop = True
        rep["elapsed_s"] = time.monotonic() - t0
        rep["next_step"] = s
        rep["status"] = (WORKER_DONE if s >= total else
                         WORKER_TIME_UP if time_up else WORKER_SLICE_END)
        return rep


def serve():
    import torch
    torch.set_num_threads(int(os.environ.get("SMLT_TORCH_THREADS", "1")))
    fd = int(os.environ.get("SMLT_JOB_FD", "1"))
    out = os.fdopen(os.dup(fd), "w", buffering=1)
    if fd == 1:
        os.dup2(2, 1)  # the training file's prints go to stderr, not into the protocol
        sys.stdout = sys.stderr
    runner = Runner()
    stdin = sys.stdin.buffer
    pending = []

    def stop_requested():
        r, _, _ = select.select([stdin], [], [], 0)
        if r:
            line = stdin.readline()
            if not line:
                return True
            if line.strip() == b"stop":
                return True
            pending.append(line)
        return False

    out.write(json.dumps({"ready": 1}) + "\n")
    while True:
        line = pending.pop(0) if pending else stdin.readline()
        if not line:
            return 0
        line = line.strip()
        if not line or line == b"stop":
            continue
        try:
            task = json.loads(line)
        except ValueError as e:
            out.write(json.dumps({"done": {"status": WORKER_FAILED, "err_code": -1,
                                           "err": "bad task line: %s" % e}}) + "\n")
            continue
        rep = runner.run(task, lambda r: out.write(json.dumps({"progress": r}) + "\n"),
                         stop_requested)
        out.write(json.dumps({"done": rep}) + "\n")


def main(argv):
    if len(argv) >= 3 and argv[0] == "describe":
        try:
            info = describe(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 1)
        except Exception as e:
            print("%s: %s: %s" % (argv[1], type(e).__name__, e), file=sys.stderr)
            return 1
        print(json.dumps(info))
        return 0
    if argv and argv[0] == "serve":
        return serve()
    print("usage: python3 -m smlt.job describe FILE OUT [SEED] | serve", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
