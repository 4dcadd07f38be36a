"""The examples of worker/python/examples/ that no other test runs, as their docstrings say to
run them:

- ps_only.py: two ranks (one with --setup) train the CNN for one epoch of Fashion-MNIST through
  two smlt-ps shards started here on loopback port 0, with no coordinator: both ranks finish,
  rank 0 reports its test accuracy (80% or more), and each shard counted every (rank, step)
  once and applied every step;
- fmnist_resnet.py: `python3 -m smlt.job describe` builds it (78 k parameters in 32 tensors),
  and submitted through smltctl (2 workers, 2 shards, 1 epoch) to a real coordinator it trains
  to 75% or more, every step applied once.

(fmnist_cnn.py is python.test_torch_job's and the benchmark's.) Every process started is
stopped by its pid. Run by CTest (python.test_examples); SMLT_BIN_DIR is the build's bin."""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from coordinator import Coordinator  # noqa: E402

BIN = os.environ.get("SMLT_BIN_DIR", os.path.join(os.getcwd(), "bin"))
EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "worker",
                        "python", "examples")
DATA = "/usr/share/datasets/fashion-mnist"
TOKEN, ADMIN = "examples-test-token", "examples-test-admin"


class ExamplesTest(unittest.TestCase):
    def setUp(self):
        if not os.path.isdir(DATA):
            self.skipTest("no Fashion-MNIST in %s (apt-get install dataset-fashion-mnist)" % DATA)
        self.tmp = tempfile.TemporaryDirectory(prefix="smlt-examples-")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.tmp.cleanup()

    def start_shard(self, i):
        pf = os.path.join(self.tmp.name, "port%d" % i)
        p = subprocess.Popen([os.path.join(BIN, "smlt-ps"), "--listen", "127.0.0.1:0",
                              "--port-file", pf, "--shard", str(i), "--token", TOKEN,
                              "--admin-token", ADMIN], stderr=subprocess.DEVNULL)
        self.procs.append(p)
        deadline = time.monotonic() + 10
        while not (os.path.exists(pf) and os.path.getsize(pf) > 0):
            self.assertIsNone(p.poll(), "smlt-ps %d exited" % i)
            self.assertLess(time.monotonic(), deadline, "smlt-ps %d did not start" % i)
            time.sleep(0.05)
        with open(pf) as f:
            return "127.0.0.1:%d" % int(f.read().strip())

    def test_ps_only_two_ranks(self):
        addrs = ",".join(self.start_shard(i) for i in range(2))
        script = os.path.join(EXAMPLES, "ps_only.py")
        common = ["--addrs", addrs, "--token", TOKEN, "--workers", "2", "--epochs", "1"]
        ranks = [subprocess.Popen([sys.executable, script, "--rank", "0", "--setup",
                                   "--admin-token", ADMIN] + common,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                 subprocess.Popen([sys.executable, script, "--rank", "1"] + common,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
        self.procs += ranks
        out = [r.communicate(timeout=600)[0] for r in ranks]
        for k, r in enumerate(ranks):
            self.assertEqual(r.returncode, 0, "rank %d:\n%s" % (k, out[k]))
        m = re.search(r"rank 0 epoch 1: step (\d+),.*test accuracy ([0-9.]+)", out[0])
        self.assertIsNotNone(m, out[0])
        steps, acc = int(m.group(1)), float(m.group(2))
        self.assertGreaterEqual(acc, 0.80, out[0])
        import smlt
        with smlt.Client(addrs, TOKEN, rank=0) as c:
            for i in range(2):
                st = c.shard_stats(i)
                self.assertEqual(st["pushes_counted"], 2 * steps, st)
                self.assertEqual(st["updates_applied"], steps, st)
        sys.stderr.write("ps_only.py: 2 ranks, %d steps, test accuracy %.4f\n" % (steps, acc))

    def test_resnet_job(self):
        resnet = os.path.join(EXAMPLES, "fmnist_resnet.py")
        r = subprocess.run([sys.executable, "-m", "smlt.job", "describe", resnet,
                            os.path.join(self.tmp.name, "m.smlt")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        info = json.loads(r.stdout)
        self.assertEqual(info["tensors"], 32, info)
        self.assertTrue(75000 < info["params"] < 80000, info)
        c = Coordinator(TOKEN, "smlt-examples-coord-")
        try:
            jid = c.smltctl("submit", "--model", "python:" + resnet, "--data", DATA,
                            "--workers", "2", "--shards", "2", "--epochs", "1", "--batch", "64",
                            "--optimizer", "momentum", "--lr", "0.05").strip()
            deadline = time.monotonic() + 600
            while True:
                j = c.job(jid)
                if j["state"] in ("succeeded", "failed", "canceled", "stopped"):
                    break
                self.assertLess(time.monotonic(), deadline, "job %s still %s" % (jid, j["state"]))
                time.sleep(1)
        finally:
            c.stop()
        self.assertEqual(j["state"], "succeeded", j.get("error") or j.get("reason"))
        self.assertEqual(j["model_params"], info["params"])
        self.assertGreaterEqual(j["test_accuracy"], 0.75, j["test_accuracy"])
        for st in j["ps_stats"]:
            self.assertEqual(st["pushes_counted"], 2 * j["step"], st)
            self.assertEqual(st["updates_applied"], j["step"], st)
        sys.stderr.write("fmnist_resnet.py: %d parameters, job %s: %.4f test accuracy at step "
                         "%d\n" % (info["params"], jid, j["test_accuracy"], j["step"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
