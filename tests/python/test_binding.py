"""Unit tests of the smlt Python package against real shards (tests/python/shards.py):
buffer ownership, errors as exceptions, refusals of buffers it cannot use in place, named
tensors, model files, and smlt.torch's DistributedOptimizer with two ranks.

Run by CTest (python.test_binding) with PYTHONPATH=build/python and SMLT_BIN_DIR=build/bin."""
import gc
import os
import sys
import tempfile
import threading
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import smlt  # noqa: E402
from shards import Shards  # noqa: E402

LAYOUT = [("w", (3, 4)), ("b", (4,))]
N = 16


class BindingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.shards = Shards(2)

    @classmethod
    def tearDownClass(cls):
        cls.shards.stop()

    def setup_job(self, workers=1, optim="sgd", lr=0.5, **kw):
        return smlt.job_setup(self.shards.addrs, self.shards.admin_token, LAYOUT, workers=workers,
                              optim=optim, lr=lr, **kw)

    def test_layout_and_flat_roundtrip(self):
        with self.setup_job() as admin:
            self.assertIsInstance(admin, smlt.Client)
            self.assertEqual(admin.num_params, N)
            self.assertEqual(admin.num_shards, 2)
            t = admin.tensors()
            self.assertEqual([(n, s) for n, s, _, _ in t], LAYOUT)
            self.assertEqual([(o, l) for _, _, o, l in t], [(0, 12), (12, 4)])
            start = np.arange(N, dtype=np.float32)
            admin.set_params(start)
            with smlt.Client(self.shards.addrs, self.shards.token) as c:
                out = np.zeros(N, dtype=np.float32)
                self.assertEqual(c.pull(out), 0)
                np.testing.assert_array_equal(out, start)
                # a step of plain SGD, lr 0.5, one worker: model - 0.5 * grad, into `out` itself
                grad = np.full(N, 2.0, dtype=np.float32)
                self.assertEqual(c.sync(0, grad, out), 1)
                np.testing.assert_array_equal(out, start - 1.0)
                part = np.zeros(4, dtype=np.float32)
                c.pull_range(12, 16, part)
                np.testing.assert_array_equal(part, start[12:] - 1.0)

    def test_buffer_ownership(self):
        """A pull writes into the caller's buffer in place and holds no reference to it after
        the call: the buffer can be resized (bytearray) and freed."""
        with self.setup_job() as admin:
            admin.set_params(np.ones(N, dtype=np.float32))
            with smlt.Client(self.shards.addrs, self.shards.token) as c:
                ba = bytearray(4 * N)
                mv = memoryview(ba).cast("f")
                c.pull(mv)
                self.assertEqual(list(mv), [1.0] * N)
                mv.release()
                ba.extend(b"1234")  # would raise BufferError if the client still held it
                arr = np.zeros(N, dtype=np.float32)
                before = sys.getrefcount(arr)
                c.pull(arr)
                c.push(0, arr)
                self.assertEqual(sys.getrefcount(arr), before)
                # the pull wrote into arr's own memory, not a copy
                view = arr[:]
                c.pull(arr, 1)
                self.assertTrue(np.shares_memory(view, arr))
                del arr, view
                gc.collect()

    def test_refusals(self):
        with self.setup_job() as admin:
            with smlt.Client(self.shards.addrs, self.shards.token) as c:
                big = np.zeros((N, 2), dtype=np.float32)
                with self.assertRaisesRegex(ValueError, "not contiguous"):
                    c.pull(big[:, 0])
                with self.assertRaisesRegex(ValueError, "not float32"):
                    c.push(0, np.zeros(N, dtype=np.float64))
                with self.assertRaisesRegex(ValueError, "holds 15 float32, the call needs 16"):
                    c.push(0, np.zeros(N - 1, dtype=np.float32))
                with self.assertRaisesRegex(ValueError, "read-only|writable"):
                    ro = np.zeros(N, dtype=np.float32)
                    ro.setflags(write=False)
                    c.pull(ro)
                with self.assertRaisesRegex(ValueError, "float32 buffer is needed"):
                    c.push(0, [0.0] * N)
                with self.assertRaisesRegex(ValueError, "pull_range"):
                    c.pull_range(10, 20, np.zeros(10, dtype=np.float32))
                # nothing was pushed by the refused calls: step 0 is still open
                self.assertEqual(c.pull(np.zeros(N, dtype=np.float32)), 0)

    def test_errors_are_exceptions(self):
        with self.setup_job():
            with self.assertRaises(smlt.Error) as cm:
                smlt.Client(self.shards.addrs, "wrong-token")
            self.assertEqual(cm.exception.code, smlt.EAUTH)
            self.assertEqual(cm.exception.name, "SMLT_EAUTH")
            self.assertTrue(cm.exception.message)
            c = smlt.Client(self.shards.addrs, self.shards.token, timeout_ms=300)
            with self.assertRaises(smlt.Error) as cm:
                c.pull(np.zeros(N, dtype=np.float32), min_clock=5, wait_ms=200)
            self.assertEqual(cm.exception.code, smlt.ETIMEDOUT)
            self.assertIn("SMLT_ETIMEDOUT", str(cm.exception))
            with self.assertRaises(smlt.Error) as cm:
                c.set_params(np.zeros(N, dtype=np.float32))
            self.assertEqual(cm.exception.code, smlt.EPERM)
            c.close()
            self.assertTrue(c.closed)
            with self.assertRaises(smlt.Error) as cm:
                c.push(0, np.zeros(N, dtype=np.float32))
            self.assertEqual(cm.exception.code, smlt.ECLOSED)
        with self.assertRaises(smlt.Error) as cm:
            smlt.Client("127.0.0.1:1", "t", retries=-1, timeout_ms=500)
        self.assertIn(cm.exception.code, (smlt.EIO, smlt.ECLOSED, smlt.ETIMEDOUT))

    def test_named_tensors(self):
        with self.setup_job() as admin:
            admin.set_params(np.arange(N, dtype=np.float32))
            with smlt.Client(self.shards.addrs, self.shards.token) as c:
                w = np.zeros((3, 4), dtype=np.float32)
                b = np.zeros(4, dtype=np.float32)
                c.pull({"w": w, "b": b})
                np.testing.assert_array_equal(w.ravel(), np.arange(12))
                np.testing.assert_array_equal(b, np.arange(12, 16))
                with self.assertRaisesRegex(ValueError, "b is missing"):
                    c.push(0, {"w": w})
                with self.assertRaisesRegex(ValueError, "no tensor called x"):
                    c.pull({"x": b})
                c.sync(0, {"w": np.ones((3, 4), np.float32), "b": np.ones(4, np.float32)},
                       {"b": b})
                np.testing.assert_array_equal(b, np.arange(12, 16) - 0.5)

    def test_model_files(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.smlt")
            vals = np.linspace(0, 1, N, dtype=np.float32)
            smlt.model_write(path, LAYOUT, vals, job="j1", step=7)
            job, step, tensors, data = smlt.model_read(path)
            self.assertEqual((job, step), ("j1", 7))
            self.assertEqual([(n, s) for n, s, _, _ in tensors], LAYOUT)
            np.testing.assert_array_equal(np.frombuffer(data, np.float32), vals)
            with open(path, "r+b") as f:
                f.seek(80)
                f.write(b"\xff\xff")
            with self.assertRaises(smlt.Error) as cm:
                smlt.model_read(path)
            self.assertEqual(cm.exception.code, smlt.ECORRUPT)


class TorchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import torch  # noqa: F401
        cls.shards = Shards(2)

    @classmethod
    def tearDownClass(cls):
        cls.shards.stop()

    def test_tensors_in_place_and_refusals(self):
        import torch
        with self.setup_layout() as admin:
            admin.set_params(torch.arange(N, dtype=torch.float32))
            with smlt.Client(self.shards.addrs, self.shards.token) as c:
                t = torch.zeros(N)
                ptr = t.data_ptr()
                c.pull(t)
                self.assertEqual(t.data_ptr(), ptr)
                self.assertTrue(torch.equal(t, torch.arange(N, dtype=torch.float32)))
                with self.assertRaisesRegex(ValueError, "not contiguous"):
                    c.pull(torch.zeros(N, 2)[:, 0])
                with self.assertRaisesRegex(ValueError, "torch.float64"):
                    c.push(0, torch.zeros(N, dtype=torch.float64))
                g = torch.ones(N, requires_grad=True)  # detached for the push, not copied
                c.push(0, g)

    def test_kept_views_follow_the_tensor(self):
        """A tensor passed again is read through its kept view only while it still has the
        same memory: one whose storage was replaced, or that became non-contiguous in place,
        is looked at again (written where it now lives, or refused)."""
        import torch
        with self.setup_layout() as admin:
            admin.set_params(torch.arange(N, dtype=torch.float32))
            with smlt.Client(self.shards.addrs, self.shards.token) as c:
                t = torch.zeros(N)
                c.pull(t)
                c.pull(t)  # the kept view
                t.set_(torch.zeros(N))  # new storage, same tensor object
                c.pull(t)
                self.assertTrue(torch.equal(t, torch.arange(N, dtype=torch.float32)))
                m = torch.zeros(N // 2, 2)
                flat = m.view(N)
                c.pull(flat)
                flat.set_(m.storage(), 0, (N // 2, 2), (1, N // 2))  # in place: transposed
                with self.assertRaisesRegex(ValueError, "not contiguous"):
                    c.pull(flat)
                t.resize_(N - 1)
                with self.assertRaisesRegex(ValueError, "15 float32"):
                    c.pull(t)

    def setup_layout(self):
        return smlt.job_setup(self.shards.addrs, self.shards.admin_token, LAYOUT, workers=1,
                              optim="sgd", lr=0.5)

    def test_distributed_optimizer_two_ranks(self):
        """Two ranks train the same module through the shards under BSP with plain SGD: after
        every step both hold exactly the model torch's own SGD reaches on the mean gradient."""
        import torch
        import smlt.torch as st
        torch.manual_seed(3)
        ref = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
        models = [torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(),
                                      torch.nn.Linear(4, 3)) for _ in range(2)]
        admin = st.setup(self.shards.addrs, self.shards.admin_token, ref, workers=2, optim="sgd",
                         lr=0.1)
        xs = [torch.randn(6, 5) for _ in range(2)]
        ys = [torch.randint(0, 3, (6,)) for _ in range(2)]
        steps = 5
        errors = []

        def rank(r):
            try:
                with smlt.Client(self.shards.addrs, self.shards.token, rank=r) as c:
                    opt = st.DistributedOptimizer(models[r], c)
                    for _ in range(steps):
                        opt.zero_grad()
                        torch.nn.functional.cross_entropy(models[r](xs[r]), ys[r]).backward()
                        opt.step()
                    self.assertEqual(opt.step_count, steps)
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        th = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
        for t in th:
            t.start()
        for t in th:
            t.join(60)
        self.assertEqual(errors, [])
        sgd = torch.optim.SGD(ref.parameters(), lr=0.1)
        for _ in range(steps):
            sgd.zero_grad()
            loss = sum(torch.nn.functional.cross_entropy(ref(xs[r]), ys[r]) for r in range(2)) / 2
            loss.backward()
            sgd.step()
        for m in models:
            for a, b in zip(m.parameters(), ref.parameters()):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        # every (rank, step) counted once on every shard
        for s in range(admin.num_shards):
            st_ = admin.shard_stats(s)
            self.assertEqual(st_["pushes_counted"], 2 * steps)
            self.assertEqual(st_["pushes_duplicate"], 0)
        # a parameter whose .grad was set to None is caught, not silently skipped
        with smlt.Client(self.shards.addrs, self.shards.token, rank=0) as c:
            opt = st.DistributedOptimizer(models[0], c)
            self.assertEqual(opt.step_count, steps)
            next(models[0].parameters()).grad = None
            with self.assertRaisesRegex(RuntimeError, "no longer a view"):
                opt.step()
        admin.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
