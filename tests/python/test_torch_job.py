"""End to end: a torch job through the coordinator, as its users submit it.

The torch CNN of worker/python/examples/fmnist_cnn.py is submitted with `smltctl submit
--model python:FILE.py` to a real smlt-coordinator (local platform: smlt-worker instances, each
running the training file in its Python child), with 2 workers and 2 shards, and must reach
90% test accuracy on Fashion-MNIST. Mid-job, rank 1's Python runner is killed (SIGKILL, by its
process id): the rank's next invocation must resume from the shards' step, and at the end every
shard must have counted exactly workers x steps pushes (each (rank, step) applied once, the
killed slice's resent step acknowledged as a duplicate, not applied twice).

Run by CTest (python.test_torch_job); SMLT_BIN_DIR is the build's bin directory."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from coordinator import Coordinator  # noqa: E402

BIN = os.environ.get("SMLT_BIN_DIR", os.path.join(os.getcwd(), "bin"))
SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXAMPLE = os.path.join(SRC, "worker", "python", "examples", "fmnist_cnn.py")
DATA = "/usr/share/datasets/fashion-mnist"


def children(pid):
    """Process ids whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(d))
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class TorchJobTest(unittest.TestCase):
    def setUp(self):
        if not os.path.isdir(DATA):
            self.skipTest("no Fashion-MNIST in %s (apt-get install dataset-fashion-mnist)" % DATA)
        self.token = "torch-job-test-token"
        self.c = Coordinator(self.token, "smlt-torchjob-")
        self.url = self.c.url

    def tearDown(self):
        self.c.stop()

    def runners(self):
        """(bootstrap pid, Python runner pid) of every worker instance the coordinator runs."""
        for w in children(self.c.pid):
            if "smlt-worker" not in cmdline(w):
                continue
            for p in children(w):
                if "smlt.job serve" in cmdline(p):
                    yield w, p

    def test_cnn_to_90_with_a_runner_killed(self):
        bad = subprocess.run([os.path.join(BIN, "smltctl"), "--url", self.url, "--token",
                              self.token, "submit", "--model", "python:/nonexistent/x.py",
                              "--data", DATA], capture_output=True, text=True)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("x.py", bad.stderr)
        jid = self.c.smltctl("submit", "--model", "python:" + EXAMPLE, "--data", DATA,
                           "--workers", "2", "--shards", "2", "--batch", "64",
                           "--optimizer", "momentum", "--lr", "0.05", "--momentum", "0.9",
                           "--target-accuracy", "0.9", "--max-epochs", "10").strip()
        killed = None
        deadline = time.monotonic() + 1200
        while True:
            j = self.c.job(jid)
            if j["state"] in ("succeeded", "failed", "canceled"):
                break
            self.assertLess(time.monotonic(), deadline, "the job did not end: %s" % j["state"])
            if killed is None and j.get("step", 0) >= 300:
                runners = list(self.runners())
                if len(runners) == 2:
                    # kill one of the two ranks' runners (either is "a worker killed
                    # mid-slice"); note which step the job had reached
                    w, p = runners[-1]
                    os.kill(p, signal.SIGKILL)
                    killed = (p, j["step"])
            time.sleep(1)
        self.assertEqual(j["state"], "succeeded", j.get("error") or j.get("reason"))
        self.assertIsNotNone(killed, "no runner was found to kill")
        self.assertGreaterEqual(j["best_accuracy"], 0.9, "best test accuracy %s" % j["best_accuracy"])
        # the killed rank was invoked again, from where it had got to (not from step 0)
        retry = [e for e in j["events"] if "Python runner died of signal 9" in json.dumps(e)]
        self.assertEqual(len(retry), 1, j["events"])
        m = re.search(r"re-invoking from step (\d+)", json.dumps(retry[0]))
        self.assertIsNotNone(m, retry[0])
        self.assertGreaterEqual(int(m.group(1)), killed[1] - 100, retry[0])
        self.assertGreaterEqual(sum(r["invocations"] for r in j["ranks"]), 3, j["ranks"])
        steps = j["step"]
        for st in j["ps_stats"]:
            self.assertEqual(st["pushes_counted"], 2 * steps, st)
            self.assertEqual(st["updates_applied"], steps, st)
        print("torch job %s: %.4f test accuracy at step %d; runner %d killed at step %d; "
              "pushes counted %s, duplicates %s" % (
                  jid, j["best_accuracy"], steps, killed[0], killed[1],
                  [s["pushes_counted"] for s in j["ps_stats"]],
                  [s["pushes_duplicate"] for s in j["ps_stats"]]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
