"""smlt: train through SMLT-C's parameter server from Python.

A Client connects to a job's shards (any one of them: the partition map names the rest) and
pushes gradients and pulls the model, as libsmlt's C client does, because it is that client
(the _smlt extension). The model is one flat float32 array, every tensor back to back in the
job's order (Client.tensors()).

Buffers. The flat calls read and write the caller's memory in place, with no copy: a numpy
array, a torch tensor (CPU, float32), a memoryview or any other buffer of C-contiguous float32
with exactly the elements the call needs. A non-contiguous tensor or array is refused with a
ValueError that says so, never copied behind your back: call .contiguous() (torch) or
numpy.ascontiguousarray() yourself, or use smlt.torch, which keeps a module's parameters and
gradients as views into one flat buffer. The named calls (a dict of name -> tensor) gather into
and scatter from a staging buffer the client keeps: one copy each way.

Errors. A failed call raises smlt.Error: .code is the negative SMLT_E* code (smlt.ETIMEDOUT,
...), .name its name ("SMLT_ETIMEDOUT"), .message libsmlt's details. Bad arguments raise
ValueError or TypeError.

Every blocking call releases the GIL. One Client serves one thread at a time (calls from
several threads are serialized).
"""

from . import _smlt
from ._smlt import (  # noqa: F401  (re-exported)
    Error,
    model_read as _model_read,
    model_write as _model_write,
    strerror,
    VERSION,
)

__all__ = ["Client", "Error", "job_setup", "model_read", "model_write", "strerror", "VERSION"]

# smlt.EINVAL, smlt.ETIMEDOUT, ... and the sync, optimizer and init constants
for _k in dir(_smlt):
    if _k.startswith(("E", "SYNC_", "OPT_", "INIT_")) and isinstance(getattr(_smlt, _k), int):
        globals()[_k] = getattr(_smlt, _k)
        __all__.append(_k)

Error.code = property(lambda self: self.args[0], doc="the negative SMLT_E* code")
Error.name = property(lambda self: self.args[1], doc='the code\'s name, "SMLT_E..."')
Error.message = property(lambda self: self.args[2], doc="what went wrong, in words")
Error.__str__ = lambda self: "%s: %s" % (self.args[1], self.args[2])

_SYNC = {"bsp": _smlt.SYNC_BSP, "ssp": _smlt.SYNC_SSP, "asp": _smlt.SYNC_ASP}
_OPTIM = {"sgd": _smlt.OPT_SGD, "momentum": _smlt.OPT_MOMENTUM, "adam": _smlt.OPT_ADAM,
          "adagrad": _smlt.OPT_ADAGRAD}


def _buf(x, what):
    """x as a buffer the extension takes: torch tensors become their numpy view (no copy)."""
    if type(x).__module__.startswith("torch"):
        if x.dtype.__repr__() != "torch.float32":
            raise ValueError("%s: the tensor is %s, not torch.float32" % (what, x.dtype))
        if x.device.type != "cpu":
            raise ValueError("%s: the tensor is on %s; the parameter server reads CPU memory"
                             % (what, x.device))
        if not x.is_contiguous():
            raise ValueError("%s: the tensor is not contiguous (copy it first: .contiguous())"
                             % what)
        return x.detach().numpy()
    return x


class Client(_smlt.Client):
    """Client(addrs, token, *, rank=0, timeout_ms=60000, retries=5, admin=False, tls=False,
    tls_ca=None, tls_ca_pem=None, tls_cert=None, tls_key=None, no_compress=False)

    A connection to a job's shards. Use it as a context manager, or close() it."""

    _staging = None
    _views = None  # id(tensor) -> (tensor, data_ptr, numel, its numpy view): see _view()

    def _view(self, x, what):
        """_buf(x) for this client's calls, with the numpy views of the torch tensors it is
        given kept (a training loop passes the same flat tensors every step, and making the
        view costs more than the rest of the Python layer). A kept view is used only while its
        tensor still has the same memory, size and contiguity."""
        v = self._views
        if v is not None:
            e = v.get(id(x))
            if (e is not None and e[0] is x and e[1] == x.data_ptr() and e[2] == x.numel()
                    and x.is_contiguous()):
                return e[3]
        b = _buf(x, what)
        if b is not x:  # a torch tensor's view
            if v is None or len(v) >= 16:
                v = self._views = {}
            v[id(x)] = (x, x.data_ptr(), x.numel(), b)
        return b

    def close(self):
        """close(): closes every connection; later calls raise smlt.Error(SMLT_ECLOSED)."""
        self._views = None
        _smlt.Client.close(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _stage(self):
        if self._staging is None or len(self._staging) != self.num_params:
            import array
            self._staging = memoryview(array.array("f", bytes(4 * self.num_params))).cast("B").cast("f")
        return self._staging

    def _gather(self, named, what):
        """A dict name -> tensor copied into the staging buffer, in the job's layout."""
        st = self._stage()
        layout = {t[0]: t for t in self.tensors()}
        unknown = set(named) - set(layout)
        if unknown:
            raise ValueError("%s: no tensor called %s in this job" % (what, sorted(unknown)[0]))
        if len(named) != len(layout):
            missing = sorted(set(layout) - set(named))
            raise ValueError("%s: a push needs every tensor; %s is missing" % (what, missing[0]))
        for name, (_, shape, off, n) in layout.items():
            src = memoryview(_buf(named[name], what)).cast("B")
            if src.nbytes != 4 * n:
                raise ValueError("%s: tensor %s has %d elements, the job's has %d (shape %s)"
                                 % (what, name, src.nbytes // 4, n, shape))
            st.cast("B")[4 * off:4 * (off + n)] = src
        return st

    def _scatter(self, st, named, what):
        layout = {t[0]: t for t in self.tensors()}
        for name, dst in named.items():
            if name not in layout:
                raise ValueError("%s: no tensor called %s in this job" % (what, name))
            _, shape, off, n = layout[name]
            d = memoryview(_buf(dst, what)).cast("B")
            if d.nbytes != 4 * n:
                raise ValueError("%s: tensor %s has %d elements, the job's has %d (shape %s)"
                                 % (what, name, d.nbytes // 4, n, shape))
            d[:] = st.cast("B")[4 * off:4 * (off + n)]

    def push(self, step, grad):
        """push(step, grad): the whole gradient for step: a flat float32 buffer (read in
        place), or a dict of every tensor's gradient by name (gathered: one copy)."""
        if isinstance(grad, dict):
            grad = self._gather(grad, "push")
        return _smlt.Client.push(self, step, self._view(grad, "push"))

    def pull(self, out, min_clock=0, wait_ms=-1):
        """pull(out, min_clock=0, wait_ms=timeout) -> clock: the whole model into out (a flat
        buffer, written in place; or a dict name -> tensor, any subset, scattered: one copy),
        once every shard's clock has reached min_clock."""
        if isinstance(out, dict):
            st = self._stage()
            clock = super().pull(st, min_clock, wait_ms)
            self._scatter(st, out, "pull")
            return clock
        return _smlt.Client.pull(self, self._view(out, "pull"), min_clock, wait_ms)

    def pull_range(self, lo, hi, out, min_clock=0, wait_ms=-1):
        return _smlt.Client.pull_range(self, lo, hi, self._view(out, "pull_range"), min_clock,
                                       wait_ms)

    def sync(self, step, grad, out):
        """sync(step, grad, out) -> clock: BSP's exchange for step: pushes grad and pulls the
        model of clock step + 1 into out (flat buffers in place, or dicts as push/pull)."""
        if isinstance(grad, dict) or isinstance(out, dict):
            self.push(step, grad)
            return self.pull(out, step + 1)
        return _smlt.Client.sync(self, step, self._view(grad, "sync"), self._view(out, "sync"))

    def set_params(self, model):
        """set_params(model): writes the whole model (admin: a Client made with admin=True or
        by job_setup())."""
        return super().set_params(_buf(model, "set_params"))


def job_setup(addrs, token, tensors, *, sync="bsp", optim="momentum", workers=1, **conf):
    """job_setup(addrs, token, tensors, *, job=None, sync="bsp", workers=1, staleness=0,
    optim="momentum", lr=..., momentum=..., nesterov=False, weight_decay=0, seed=...,
    checkpoint_dir=None, checkpoint_every=0, timeout_ms=60000) -> Client

    Sets up a job on every shard (addrs: all of them, comma-separated, in shard order; token:
    the admin token, or the job token where the shards have no admin token) and returns an
    admin Client. tensors: a list of (name, shape) or (name, shape, init, scale) with init one
    of smlt.INIT_*; (name, shape) starts at zero: follow with set_params() to start from a
    model's own initialization."""
    if sync not in _SYNC:
        raise ValueError("sync: one of %s" % sorted(_SYNC))
    if optim not in _OPTIM:
        raise ValueError("optim: one of %s" % sorted(_OPTIM))
    return _smlt.job_setup(addrs, token, list(tensors), sync=_SYNC[sync], optim=_OPTIM[optim],
                           workers=workers, client_class=Client, **conf)


def model_write(path, tensors, values, job="", step=0):
    """model_write(path, tensors, values, job="", step=0): a model file (smltctl model's
    format): tensors as (name, shape), values their flat float32 buffer."""
    return _model_write(path, [(t[0], tuple(t[1])) for t in tensors], _buf(values, "model_write"),
                        job, step)


def model_read(path):
    """model_read(path) -> (job, step, [(name, shape, offset, length)], values as bytes):
    reads a model file and checks every CRC (numpy.frombuffer(values, numpy.float32))."""
    return _model_read(path)
