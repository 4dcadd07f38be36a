"""Test helper: real smlt-ps shards on loopback port 0, stopped by their process ids."""
import os
import subprocess
import tempfile
import time


class Shards:
    """n smlt-ps processes (SMLT_BIN_DIR/smlt-ps) with one job token and one admin token;
    .addrs lists them."""

    def __init__(self, n=2, token="py-test-token", admin_token="py-admin-token"):
        self.token = token
        self.admin_token = admin_token
        self.procs = []
        self.dir = tempfile.TemporaryDirectory(prefix="smlt-py-")
        bindir = os.environ.get("SMLT_BIN_DIR", os.path.join(os.getcwd(), "bin"))
        addrs = []
        try:
            for i in range(n):
                pf = os.path.join(self.dir.name, "port-%d" % i)
                p = subprocess.Popen([os.path.join(bindir, "smlt-ps"), "--listen", "127.0.0.1:0",
                                      "--shard", str(i), "--token", token, "--port-file", pf,
                                      "--admin-token", admin_token,
                                      "--log-level", os.environ.get("SMLT_PS_LOG", "warn")])
                self.procs.append(p)
                deadline = time.monotonic() + 20
                while not (os.path.exists(pf) and os.path.getsize(pf) > 0):
                    if p.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("smlt-ps %d did not start" % i)
                    time.sleep(0.01)
                with open(pf) as f:
                    addrs.append("127.0.0.1:%d" % int(f.read().strip()))
        except BaseException:
            self.stop()
            raise
        self.addrs = ",".join(addrs)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        self.dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
