/* _smlt.c: the CPython extension under the `smlt` package: libsmlt's client for Python.
 *
 * A thin layer: one Client object over one struct smlt_client, the job set-up call and the
 * model files. Buffers travel by the buffer protocol, never copied: a push reads straight from
 * the caller's float32 buffer (a numpy array, a torch tensor's .numpy() view, a memoryview),
 * and a pull writes straight into it. Such a buffer must be C-contiguous float32 with exactly
 * the elements the call needs; anything else is refused with a ValueError that says so (the
 * Python layer, smlt/__init__.py, turns torch tensors into views and documents the rule).
 *
 * Every blocking call releases the GIL, so other Python threads (a data loader) run while a
 * worker waits for its peers. A Client is not thread-safe, as libsmlt's client is not: calls
 * on one Client from two threads are serialized by a lock here rather than left to corrupt it.
 *
 * Errors: a failed call raises smlt.Error, whose args are (code, name, message): the negative
 * SMLT_E* code, its name ("SMLT_ETIMEDOUT") and smlt_client_errmsg()'s details. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <stdint.h>
#include <string.h>

#include "smlt.h"
#include "smlt_admin.h"

static PyObject *SmltError; /* smlt.Error */

/* Raises smlt.Error for code with message msg (NULL or "": smlt_strerror(code)). */
static PyObject *raise_smlt(int code, const char *msg)
{
    if (!msg || !msg[0])
        msg = smlt_strerror(code);
    PyObject *args = Py_BuildValue("(iss)", code, smlt_errname(code), msg);
    if (args) {
        PyErr_SetObject(SmltError, args);
        Py_DECREF(args);
    }
    return NULL;
}

typedef struct {
    PyObject_HEAD
    struct smlt_client *c;
    PyThread_type_lock lock;
    int timeout_ms;
} Client;

/* Gets obj's buffer as C-contiguous float32 of exactly n elements (writable if asked).
 * Returns 0, or -1 with ValueError/TypeError set and no buffer held. */
static int get_floats(PyObject *obj, Py_buffer *v, uint64_t n, int writable, const char *what)
{
    int flags = PyBUF_FORMAT | PyBUF_ND | PyBUF_STRIDES | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, v, flags) != 0) {
        if (PyErr_ExceptionMatches(PyExc_BufferError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError,
                         "%s: a%s float32 buffer is needed (a numpy array, a torch tensor, a "
                         "memoryview), not %.80s",
                         what, writable ? " writable" : "", Py_TYPE(obj)->tp_name);
        }
        return -1;
    }
    const char *why = NULL;
    if (!PyBuffer_IsContiguous(v, 'C'))
        why = "is not contiguous (copy it first: .contiguous() or numpy.ascontiguousarray())";
    else if (v->itemsize != 4 || !v->format ||
             (strcmp(v->format, "f") && strcmp(v->format, "<f") && strcmp(v->format, "=f")))
        why = "is not float32";
    if (why) {
        PyErr_Format(PyExc_ValueError, "%s: the buffer %s", what, why);
        PyBuffer_Release(v);
        return -1;
    }
    if ((uint64_t)v->len != n * 4) {
        PyErr_Format(PyExc_ValueError, "%s: the buffer holds %zd float32, the call needs %llu",
                     what, v->len / 4, (unsigned long long)n);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

static int client_ready(Client *self)
{
    if (!self->c) {
        raise_smlt(SMLT_ECLOSED, "the client is closed");
        return 0;
    }
    return 1;
}

/* Runs a blocking libsmlt call without the GIL and with the client's lock. */
#define UNLOCKED(self, stmt)                                                                     \
    do {                                                                                         \
        Py_BEGIN_ALLOW_THREADS                                                                   \
        PyThread_acquire_lock((self)->lock, WAIT_LOCK);                                          \
        stmt;                                                                                    \
        PyThread_release_lock((self)->lock);                                                     \
        Py_END_ALLOW_THREADS                                                                     \
    } while (0)

static PyObject *client_fail(Client *self, int rc)
{
    return raise_smlt(rc, self->c ? smlt_client_errmsg(self->c) : NULL);
}

static int Client_init(Client *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"addrs",  "token",  "rank",     "timeout_ms", "retries",
                             "admin",  "tls",    "tls_ca",   "tls_ca_pem", "tls_cert",
                             "tls_key", "no_compress", NULL};
    const char *addrs, *token, *ca = NULL, *ca_pem = NULL, *cert = NULL, *key = NULL;
    unsigned int rank = 0;
    int timeout_ms = 0, retries = 0, admin = 0, tls = 0, no_compress = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ss|$Iiippzzzzp", kwlist, &addrs, &token, &rank,
                                     &timeout_ms, &retries, &admin, &tls, &ca, &ca_pem, &cert,
                                     &key, &no_compress))
        return -1;
    if (self->c) {
        PyErr_SetString(PyExc_RuntimeError, "Client.__init__ called twice");
        return -1;
    }
    if (!self->lock && !(self->lock = PyThread_allocate_lock())) {
        PyErr_NoMemory();
        return -1;
    }
    struct smlt_client_opts o = {.token = token, .admin = admin, .worker = rank,
                                 .timeout_ms = timeout_ms, .retries = retries,
                                 .no_compress = no_compress, .tls = tls, .tls_ca = ca,
                                 .tls_ca_pem = ca_pem, .tls_cert = cert, .tls_key = key};
    char err[512] = "";
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = smlt_client_connect(&self->c, addrs, &o, err, sizeof err);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        raise_smlt(rc, err);
        return -1;
    }
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
    return 0;
}

static void Client_dealloc(Client *self)
{
    smlt_client_close(self->c);
    if (self->lock)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Client_close(Client *self, PyObject *unused)
{
    struct smlt_client *c = self->c;
    if (c) {
        UNLOCKED(self, self->c = NULL);
        smlt_client_close(c);
    }
    Py_RETURN_NONE;
}

/* A call that reads the whole model's worth of floats from obj (in place): push, set_params. */
static PyObject *whole_model_call(Client *self, PyObject *obj, const char *what,
                                  int (*fn)(struct smlt_client *, uint64_t, const float *),
                                  uint64_t step)
{
    Py_buffer b;
    if (get_floats(obj, &b, smlt_client_num_params(self->c), 0, what) != 0)
        return NULL;
    int rc;
    UNLOCKED(self, rc = fn(self->c, step, b.buf));
    PyBuffer_Release(&b);
    if (rc)
        return client_fail(self, rc);
    Py_RETURN_NONE;
}

static int set_params_at(struct smlt_client *c, uint64_t step, const float *model)
{
    (void)step;
    return smlt_set_params(c, model);
}

static PyObject *Client_push(Client *self, PyObject *args)
{
    unsigned long long step;
    PyObject *grad;
    if (!PyArg_ParseTuple(args, "KO", &step, &grad) || !client_ready(self))
        return NULL;
    return whole_model_call(self, grad, "push", smlt_push, step);
}

static PyObject *Client_pull(Client *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"out", "min_clock", "wait_ms", NULL};
    PyObject *out;
    unsigned long long min_clock = 0;
    int wait_ms = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|Ki", kwlist, &out, &min_clock, &wait_ms) ||
        !client_ready(self))
        return NULL;
    Py_buffer m;
    if (get_floats(out, &m, smlt_client_num_params(self->c), 1, "pull") != 0)
        return NULL;
    uint64_t clock = 0;
    int rc;
    if (wait_ms < 0)
        wait_ms = self->timeout_ms;
    UNLOCKED(self, rc = smlt_pull(self->c, min_clock, wait_ms, m.buf, &clock));
    PyBuffer_Release(&m);
    if (rc)
        return client_fail(self, rc);
    return PyLong_FromUnsignedLongLong(clock);
}

static PyObject *Client_pull_range(Client *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"lo", "hi", "out", "min_clock", "wait_ms", NULL};
    unsigned long long lo, hi, min_clock = 0;
    PyObject *out;
    int wait_ms = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "KKO|Ki", kwlist, &lo, &hi, &out, &min_clock,
                                     &wait_ms) ||
        !client_ready(self))
        return NULL;
    if (hi < lo || hi > smlt_client_num_params(self->c)) {
        PyErr_Format(PyExc_ValueError, "pull_range: [%llu, %llu) is not within the model's %llu "
                     "parameters", lo, hi, (unsigned long long)smlt_client_num_params(self->c));
        return NULL;
    }
    Py_buffer m;
    if (get_floats(out, &m, hi - lo, 1, "pull_range") != 0)
        return NULL;
    uint64_t clock = 0;
    int rc;
    if (wait_ms < 0)
        wait_ms = self->timeout_ms;
    UNLOCKED(self, rc = smlt_pull_range(self->c, lo, hi, min_clock, wait_ms, m.buf, &clock));
    PyBuffer_Release(&m);
    if (rc)
        return client_fail(self, rc);
    return PyLong_FromUnsignedLongLong(clock);
}

static PyObject *Client_sync(Client *self, PyObject *args)
{
    unsigned long long step;
    PyObject *grad, *out;
    if (!PyArg_ParseTuple(args, "KOO", &step, &grad, &out) || !client_ready(self))
        return NULL;
    uint64_t n = smlt_client_num_params(self->c);
    Py_buffer g, m;
    if (get_floats(grad, &g, n, 0, "sync (gradient)") != 0)
        return NULL;
    if (get_floats(out, &m, n, 1, "sync (model)") != 0) {
        PyBuffer_Release(&g);
        return NULL;
    }
    uint64_t clock = 0;
    int rc;
    UNLOCKED(self, rc = smlt_sync(self->c, step, g.buf, m.buf, &clock));
    PyBuffer_Release(&g);
    PyBuffer_Release(&m);
    if (rc)
        return client_fail(self, rc);
    return PyLong_FromUnsignedLongLong(clock);
}

static PyObject *Client_set_params(Client *self, PyObject *args)
{
    PyObject *model;
    if (!PyArg_ParseTuple(args, "O", &model) || !client_ready(self))
        return NULL;
    return whole_model_call(self, model, "set_params", set_params_at, 0);
}

static PyObject *Client_update_conf(Client *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"lr", "weight_decay", "workers", NULL};
    PyObject *lr_o = Py_None, *wd_o = Py_None, *w_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$OOO", kwlist, &lr_o, &wd_o, &w_o) ||
        !client_ready(self))
        return NULL;
    float lr = 0, wd = 0;
    uint32_t workers = 0;
    if (lr_o != Py_None && (lr = (float)PyFloat_AsDouble(lr_o), PyErr_Occurred()))
        return NULL;
    if (wd_o != Py_None && (wd = (float)PyFloat_AsDouble(wd_o), PyErr_Occurred()))
        return NULL;
    if (w_o != Py_None && (workers = (uint32_t)PyLong_AsUnsignedLong(w_o), PyErr_Occurred()))
        return NULL;
    int rc;
    UNLOCKED(self, rc = smlt_update_conf(self->c, lr_o != Py_None ? &lr : NULL,
                                         wd_o != Py_None ? &wd : NULL,
                                         w_o != Py_None ? &workers : NULL));
    if (rc)
        return client_fail(self, rc);
    Py_RETURN_NONE;
}

/* (name, shape, offset, length) of a tensor, as tensors() and model_read() give them. */
static PyObject *tensor_tuple(const struct smlt_tensor_info *ti)
{
    PyObject *shape = PyTuple_New(ti->ndims);
    for (uint32_t d = 0; shape && d < ti->ndims; d++)
        PyTuple_SET_ITEM(shape, d, PyLong_FromUnsignedLongLong(ti->shape[d]));
    return shape ? Py_BuildValue("(sNKK)", ti->name, shape, (unsigned long long)ti->offset,
                                 (unsigned long long)ti->length)
                 : NULL;
}

static PyObject *Client_tensors(Client *self, PyObject *unused)
{
    if (!client_ready(self))
        return NULL;
    uint32_t n = smlt_client_num_tensors(self->c);
    PyObject *list = PyList_New(n);
    for (uint32_t i = 0; list && i < n; i++) {
        struct smlt_tensor_info ti;
        smlt_client_tensor(self->c, i, &ti);
        PyObject *t = tensor_tuple(&ti);
        if (!t) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

static PyObject *Client_shard_stats(Client *self, PyObject *args)
{
    unsigned int shard;
    if (!PyArg_ParseTuple(args, "I", &shard) || !client_ready(self))
        return NULL;
    struct smlt_shard_stats s;
    int rc;
    UNLOCKED(self, rc = smlt_shard_stats(self->c, shard, &s));
    if (rc)
        return client_fail(self, rc);
    return Py_BuildValue(
        "{sIsKsKsKsKsKsKsKsKsKsIsKsKsKsKsd}", "shard", s.shard, "version", s.version, "clock",
        s.clock, "lo", s.lo, "hi", s.hi, "pushes_received", s.pushes_received, "pushes_counted",
        s.pushes_counted, "pushes_duplicate", s.pushes_duplicate, "pushes_rejected",
        s.pushes_rejected, "updates_applied", s.updates_applied, "workers", s.workers,
        "pulls_served", s.pulls_served, "bytes_in", s.bytes_in, "bytes_out", s.bytes_out,
        "map_version", s.map_version, "lr", (double)s.lr);
}

static PyObject *Client_num_params(Client *self, void *unused)
{
    return client_ready(self) ? PyLong_FromUnsignedLongLong(smlt_client_num_params(self->c))
                              : NULL;
}

static PyObject *Client_num_shards(Client *self, void *unused)
{
    return client_ready(self) ? PyLong_FromUnsignedLong(smlt_client_num_shards(self->c)) : NULL;
}

static PyObject *Client_map_version(Client *self, void *unused)
{
    return client_ready(self) ? PyLong_FromUnsignedLongLong(smlt_client_map_version(self->c))
                              : NULL;
}

static PyObject *Client_closed(Client *self, void *unused)
{
    return PyBool_FromLong(self->c == NULL);
}

static PyMethodDef Client_methods[] = {
    {"close", (PyCFunction)Client_close, METH_NOARGS,
     "close(): closes every connection; later calls raise smlt.Error(SMLT_ECLOSED)."},
    {"push", (PyCFunction)Client_push, METH_VARARGS,
     "push(step, grad): pushes the whole gradient (num_params float32, read in place)."},
    {"pull", (PyCFunction)(void (*)(void))Client_pull, METH_VARARGS | METH_KEYWORDS,
     "pull(out, min_clock=0, wait_ms=timeout) -> clock: pulls the whole model into out "
     "(num_params float32, written in place), waiting for every shard to reach min_clock."},
    {"pull_range", (PyCFunction)(void (*)(void))Client_pull_range, METH_VARARGS | METH_KEYWORDS,
     "pull_range(lo, hi, out, min_clock=0, wait_ms=timeout) -> clock: elements [lo, hi)."},
    {"sync", (PyCFunction)Client_sync, METH_VARARGS,
     "sync(step, grad, out) -> clock: a BSP step's exchange: pushes grad for step and pulls "
     "the model of clock step + 1 into out."},
    {"set_params", (PyCFunction)Client_set_params, METH_VARARGS,
     "set_params(model): writes the whole model (admin; optimizer state reset)."},
    {"update_conf", (PyCFunction)(void (*)(void))Client_update_conf, METH_VARARGS | METH_KEYWORDS,
     "update_conf(*, lr=None, weight_decay=None, workers=None): changes them on every shard."},
    {"tensors", (PyCFunction)Client_tensors, METH_NOARGS,
     "tensors() -> [(name, shape, offset, length)]: the job's layout, in order."},
    {"shard_stats", (PyCFunction)Client_shard_stats, METH_VARARGS,
     "shard_stats(shard) -> dict: one shard's counters."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Client_getset[] = {
    {"num_params", (getter)Client_num_params, NULL, "elements in the flat model", NULL},
    {"num_shards", (getter)Client_num_shards, NULL, "shards in the partition map", NULL},
    {"map_version", (getter)Client_map_version, NULL, "the partition map's version", NULL},
    {"closed", (getter)Client_closed, NULL, "whether close() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "smlt._smlt.Client",
    .tp_basicsize = sizeof(Client),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Client(addrs, token, *, rank=0, timeout_ms=60000, retries=5, admin=False, "
              "tls=False, tls_ca=None, tls_ca_pem=None, tls_cert=None, tls_key=None, "
              "no_compress=False): a connection to a job's shards (any of them: the "
              "partition map names the rest).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Client_init,
    .tp_dealloc = (destructor)Client_dealloc,
    .tp_methods = Client_methods,
    .tp_getset = Client_getset,
};

/* A list of (name, shape) or (name, shape, init, scale) as tensor definitions. */
struct defs {
    PyObject *seq; /* the list, holding the names the definitions borrow */
    Py_ssize_t n;
    struct smlt_tensor_def *t;
    uint64_t *shapes; /* DEFS_DIMS per tensor */
    uint64_t total;   /* elements in all */
};

#define DEFS_DIMS 8

static void defs_free(struct defs *d)
{
    PyMem_Free(d->t);
    PyMem_Free(d->shapes);
    Py_XDECREF(d->seq);
}

/* Fills d from tensors (what names the caller in messages). Returns 0, or -1 with an exception
 * set (d freed either way by defs_free()). */
static int defs_parse(PyObject *tensors, const char *what, struct defs *d)
{
    memset(d, 0, sizeof *d);
    if (!(d->seq = PySequence_Fast(tensors, "tensors must be a list of (name, shape)")))
        return -1;
    d->n = PySequence_Fast_GET_SIZE(d->seq);
    d->t = PyMem_Calloc(d->n ? (size_t)d->n : 1, sizeof *d->t);
    d->shapes = PyMem_Calloc(d->n ? (size_t)d->n * DEFS_DIMS : 1, sizeof *d->shapes);
    if (!d->t || !d->shapes) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < d->n; i++) {
        PyObject *shape;
        const char *name;
        int init = SMLT_INIT_ZERO;
        float scale = 0;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(d->seq, i), "sO|if", &name, &shape, &init,
                              &scale))
            return -1;
        PyObject *ss = PySequence_Fast(shape, "a tensor's shape must be a sequence");
        if (!ss)
            return -1;
        Py_ssize_t nd = PySequence_Fast_GET_SIZE(ss);
        uint64_t len = 1, *sh = d->shapes + i * DEFS_DIMS;
        for (Py_ssize_t k = 0; k < nd && k < DEFS_DIMS; k++) {
            sh[k] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(ss, k));
            len *= sh[k];
        }
        Py_DECREF(ss);
        if (PyErr_Occurred())
            return -1;
        if (nd < 1 || nd > DEFS_DIMS) {
            PyErr_Format(PyExc_ValueError, "%s: tensor %s has %zd dimensions (1..%d)", what,
                         name, nd, DEFS_DIMS);
            return -1;
        }
        d->t[i] = (struct smlt_tensor_def){.name = name, .ndims = (uint32_t)nd, .shape = sh,
                                           .init = init, .init_scale = scale};
        d->total += len;
    }
    return 0;
}

/* job_setup(addrs, token, tensors, *, job, sync, workers, staleness, optim, lr, momentum,
 * nesterov, weight_decay, seed, checkpoint_dir, checkpoint_every) -> Client (admin): tensors
 * is a list of (name, shape) or (name, shape, init, scale). */
static PyObject *mod_job_setup(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"addrs",     "token",   "tensors",    "job",        "sync",
                             "workers",   "staleness", "optim",    "lr",         "momentum",
                             "nesterov",  "weight_decay", "seed",  "checkpoint_dir",
                             "checkpoint_every", "timeout_ms", "client_class", NULL};
    struct smlt_job_conf conf;
    smlt_job_conf_default(&conf);
    const char *addrs, *token, *job = NULL, *ckdir = NULL;
    PyObject *tensors, *cls = (PyObject *)&ClientType;
    unsigned int workers = conf.workers ? conf.workers : 1, staleness = conf.staleness;
    int sync = conf.sync, optim = conf.optim, nesterov = conf.nesterov, timeout_ms = 60000;
    float lr = conf.lr, momentum = conf.momentum, wd = conf.weight_decay;
    unsigned long long seed = conf.seed, ck_every = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ssO|$ziIIiffpfKzKiO", kwlist, &addrs,
                                     &token, &tensors, &job, &sync, &workers, &staleness, &optim,
                                     &lr, &momentum, &nesterov, &wd, &seed, &ckdir, &ck_every,
                                     &timeout_ms, &cls))
        return NULL;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &ClientType)) {
        PyErr_SetString(PyExc_TypeError, "job_setup: client_class must be a Client subclass");
        return NULL;
    }
    struct defs d;
    PyObject *ret = NULL;
    if (defs_parse(tensors, "job_setup", &d) != 0)
        goto out;
    conf.job = job;
    conf.sync = sync;
    conf.workers = workers;
    conf.staleness = staleness;
    conf.optim = optim;
    conf.lr = lr;
    conf.momentum = momentum;
    conf.nesterov = nesterov;
    conf.weight_decay = wd;
    conf.seed = seed;
    conf.checkpoint_dir = ckdir;
    conf.checkpoint_every = ck_every;
    /* A client not yet connected (no __init__: job_setup connects it). */
    PyObject *noargs = PyTuple_New(0);
    Client *cl = noargs ? (Client *)((PyTypeObject *)cls)->tp_new((PyTypeObject *)cls, noargs,
                                                                  NULL)
                        : NULL;
    Py_XDECREF(noargs);
    if (!cl)
        goto out;
    if (!(cl->lock = PyThread_allocate_lock())) {
        Py_DECREF(cl);
        PyErr_NoMemory();
        goto out;
    }
    struct smlt_client_opts o = {.token = token, .admin = 1, .timeout_ms = timeout_ms};
    char err[512] = "";
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = smlt_job_setup(&cl->c, addrs, &o, d.t, (size_t)d.n, &conf, err, sizeof err);
    Py_END_ALLOW_THREADS
    if (rc) {
        Py_DECREF(cl);
        raise_smlt(rc, err);
        goto out;
    }
    cl->timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
    ret = (PyObject *)cl;
out:
    defs_free(&d);
    return ret;
}

/* model_write(path, tensors, values, job="", step=0): tensors as (name, shape); values a
 * float32 buffer of their total length. */
static PyObject *mod_model_write(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "tensors", "values", "job", "step", NULL};
    const char *path, *job = "";
    PyObject *tensors, *values;
    unsigned long long step = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sOO|zK", kwlist, &path, &tensors, &values, &job,
                                     &step))
        return NULL;
    struct defs d;
    PyObject *ret = NULL;
    if (defs_parse(tensors, "model_write", &d) != 0)
        goto out;
    Py_buffer v;
    if (get_floats(values, &v, d.total, 0, "model_write") != 0)
        goto out;
    char err[512] = "";
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = smlt_model_write(path, d.t, (size_t)d.n, v.buf, d.total, job, step, err, sizeof err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&v);
    if (rc) {
        raise_smlt(rc, err);
        goto out;
    }
    ret = Py_NewRef(Py_None);
out:
    defs_free(&d);
    return ret;
}

/* model_read(path) -> (job, step, [(name, shape, offset, length)], bytes of float32) */
static PyObject *mod_model_read(PyObject *m, PyObject *args)
{
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    struct smlt_model *md = NULL;
    char err[512] = "";
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = smlt_model_read(path, &md, err, sizeof err);
    Py_END_ALLOW_THREADS
    if (rc)
        return raise_smlt(rc, err);
    uint32_t nt = smlt_model_num_tensors(md);
    PyObject *list = PyList_New(nt), *ret = NULL;
    for (uint32_t i = 0; list && i < nt; i++) {
        struct smlt_tensor_info ti;
        smlt_model_tensor(md, i, &ti);
        PyObject *t = tensor_tuple(&ti);
        if (!t)
            goto out;
        PyList_SET_ITEM(list, i, t);
    }
    if (list)
        ret = Py_BuildValue("(sKOy#)", smlt_model_job(md), (unsigned long long)smlt_model_step(md),
                            list, (const char *)smlt_model_values(md),
                            (Py_ssize_t)(smlt_model_num_params(md) * 4));
out:
    Py_XDECREF(list);
    smlt_model_free(md);
    return ret;
}

static PyObject *mod_strerror(PyObject *m, PyObject *args)
{
    int code;
    if (!PyArg_ParseTuple(args, "i", &code))
        return NULL;
    return Py_BuildValue("(ss)", smlt_errname(code), smlt_strerror(code));
}

static PyMethodDef mod_methods[] = {
    {"job_setup", (PyCFunction)(void (*)(void))mod_job_setup, METH_VARARGS | METH_KEYWORDS,
     "job_setup(addrs, token, tensors, **conf) -> Client: sets up a job on every shard (admin)."},
    {"model_write", (PyCFunction)(void (*)(void))mod_model_write, METH_VARARGS | METH_KEYWORDS,
     "model_write(path, tensors, values, job='', step=0): writes a model file."},
    {"model_read", (PyCFunction)mod_model_read, METH_VARARGS,
     "model_read(path) -> (job, step, tensors, values bytes): reads and checks a model file."},
    {"strerror", (PyCFunction)mod_strerror, METH_VARARGS,
     "strerror(code) -> (name, description) of an SMLT_E* code."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef mod_def = {PyModuleDef_HEAD_INIT,
                                     .m_name = "_smlt",
                                     .m_doc = "libsmlt's client (see the smlt package)",
                                     .m_size = -1,
                                     .m_methods = mod_methods};

PyMODINIT_FUNC PyInit__smlt(void)
{
    if (PyType_Ready(&ClientType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&mod_def);
    if (!m)
        return NULL;
    SmltError = PyErr_NewExceptionWithDoc(
        "smlt._smlt.Error",
        "A failed libsmlt call: args are (code, name, message); .code is the negative SMLT_E* "
        "code.",
        NULL, NULL);
    if (!SmltError || PyModule_AddObjectRef(m, "Error", SmltError) < 0 ||
        PyModule_AddObjectRef(m, "Client", (PyObject *)&ClientType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    static const struct {
        const char *name;
        int v;
    } consts[] = {{"SYNC_BSP", SMLT_SYNC_BSP},   {"SYNC_SSP", SMLT_SYNC_SSP},
                  {"SYNC_ASP", SMLT_SYNC_ASP},   {"OPT_SGD", SMLT_OPT_SGD},
                  {"OPT_MOMENTUM", SMLT_OPT_MOMENTUM}, {"OPT_ADAM", SMLT_OPT_ADAM},
                  {"OPT_ADAGRAD", SMLT_OPT_ADAGRAD}, {"INIT_ZERO", SMLT_INIT_ZERO},
                  {"INIT_UNIFORM", SMLT_INIT_UNIFORM}, {"INIT_NORMAL", SMLT_INIT_NORMAL},
                  {"INIT_CONST", SMLT_INIT_CONST}};
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++)
        if (PyModule_AddIntConstant(m, consts[i].name, consts[i].v) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    for (int code = -1; code >= -40; code--) {
        const char *name = smlt_errname(code);
        if (name && !strncmp(name, "SMLT_E", 6) && PyModule_AddIntConstant(m, name + 5, code) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    PyModule_AddStringConstant(m, "VERSION", SMLT_VERSION);
    return m;
}
