"""smlt.torch: a torch.nn.Module trained through SMLT-C's shards, in a few lines.

    import smlt, smlt.torch
    client = smlt.Client("ps-0:4100", token, rank=rank)
    opt = smlt.torch.DistributedOptimizer(model, client)     # pulls the current model
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()        # pushes the gradient, pulls the updated parameters (the shards'
                          # optimizer applies the update: momentum, Adam, ... as the job says)

How: the module's parameters become views into one flat float32 tensor, in the job's order
(named_parameters()), and their .grad views into a second one. A step is then one
Client.sync() from the flat gradient into the flat parameters: no copy on our side, every
shard in flight at once. zero_grad() zeroes the flat gradient in place: do not set .grad to
None (torch 2's default for Module.zero_grad(set_to_none=True)), which would detach a
parameter's gradient from the flat buffer; step() refuses to go on if that happened.

Buffers that are not parameters (BatchNorm's running statistics) stay local to each worker.
"""

import torch

import smlt

__all__ = ["DistributedOptimizer", "flatten", "layout", "setup"]


def layout(module):
    """[(name, shape)] of module's parameters, in named_parameters() order: the job's tensors."""
    return [(n, tuple(p.shape) if p.dim() else (1,)) for n, p in module.named_parameters()]


def flatten(module):
    """Makes module's parameters (and their gradients) views into two flat float32 CPU tensors,
    keeping their values. Returns (params, grads). Idempotent: a module flattened already
    returns the same two tensors."""
    got = getattr(module, "_smlt_flat", None)
    if got is not None:
        return got
    ps = [p for _, p in module.named_parameters()]
    for n, p in module.named_parameters():
        if p.dtype != torch.float32 or p.device.type != "cpu":
            raise ValueError("smlt.torch: parameter %s is %s on %s; the shards hold float32 in "
                             "CPU memory" % (n, p.dtype, p.device))
    total = sum(p.numel() for p in ps)
    flat = torch.empty(total, dtype=torch.float32)
    gflat = torch.zeros(total, dtype=torch.float32)
    off = 0
    with torch.no_grad():
        for p in ps:
            n = p.numel()
            flat[off:off + n].copy_(p.reshape(-1))
            p.data = flat[off:off + n].view_as(p)
            p.grad = gflat[off:off + n].view_as(p)
            off += n
    module._smlt_flat = (flat, gflat)
    return flat, gflat


def setup(addrs, admin_token, module, **conf):
    """Sets up a job for module on the shards at addrs (all of them, in shard order) and writes
    the module's current parameters as the starting model. conf: as smlt.job_setup()'s (sync,
    workers, optim, lr, momentum, ...). Returns the admin Client."""
    flat, _ = flatten(module)
    c = smlt.job_setup(addrs, admin_token, layout(module), **conf)
    try:
        c.set_params(flat)
    except BaseException:
        c.close()
        raise
    return c


class DistributedOptimizer:
    """DistributedOptimizer(module, client, *, step=None, sync="bsp", staleness=0)

    Trains module through the job on client's shards. On creation it checks that the job's
    tensors are the module's (names and sizes) and pulls the current model into the module.
    step: the step to start from (default: the shards' clock, so a restarted worker resumes
    where the job is). sync: the job's mode: "bsp" pushes and pulls in one exchange and waits
    for every rank; "ssp" waits until the slowest rank is within staleness steps; "asp" never
    waits."""

    def __init__(self, module, client, *, step=None, sync="bsp", staleness=0):
        if sync not in ("bsp", "ssp", "asp"):
            raise ValueError("sync: bsp, ssp or asp")
        self.module, self.client, self.sync_mode, self.staleness = module, client, sync, staleness
        self.params, self.grads = flatten(module)
        mine = layout(module)
        theirs = client.tensors()
        if len(mine) != len(theirs):
            raise ValueError("smlt.torch: the job has %d tensors, the module %d"
                             % (len(theirs), len(mine)))
        for (n, shape), (tn, tshape, _, length) in zip(mine, theirs):
            numel = 1
            for d in shape:
                numel *= d
            if n != tn or numel != length:
                raise ValueError("smlt.torch: the job's tensor %s (%d elements) is %s (%d) in "
                                 "the module" % (tn, length, n, numel))
        self._grad_views = [p.grad for p in module.parameters()]
        clock = client.pull(self.params)
        self.step_count = clock if step is None else step
        if step is not None and step > clock:
            self.clock = client.pull(self.params, self._need(step))
        else:
            self.clock = clock

    def _need(self, s):
        if self.sync_mode == "bsp":
            return s
        if self.sync_mode == "ssp":
            return max(0, s - self.staleness)
        return 0

    def zero_grad(self, set_to_none=False):
        """Zeroes the flat gradient (set_to_none is accepted and ignored: the gradients must
        stay views of the flat buffer)."""
        self.grads.zero_()

    def step(self, closure=None):
        """Pushes this step's gradient and pulls the updated model into the module. Returns
        closure()'s loss if given (it is evaluated first), else None."""
        loss = closure() if closure is not None else None
        for p, g in zip(self.module.parameters(), self._grad_views):
            if p.grad is not g:
                raise RuntimeError("smlt.torch: a parameter's .grad is no longer a view of the "
                                   "flat gradient (zero_grad(set_to_none=True)?): use "
                                   "DistributedOptimizer.zero_grad()")
        s = self.step_count
        if self.sync_mode == "bsp":
            self.clock = self.client.sync(s, self.grads, self.params)
        else:
            self.client.push(s, self.grads)
            self.clock = self.client.pull(self.params, self._need(s + 1))
        self.step_count = s + 1
        return loss

    def state_dict(self):
        return {"step": self.step_count}
