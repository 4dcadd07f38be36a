"""Test helper: a real smlt-coordinator on loopback port 0 (local platform), in a temporary
directory, stopped by its process id (it stops its own shards and worker instances on
SIGTERM)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time


class Coordinator:
    """smlt-coordinator from SMLT_BIN_DIR with admin token `token`; .url is its API's base, .pid
    its process id, .dir its temporary directory (the state under dir/state)."""

    def __init__(self, token, prefix="smlt-py-coord-"):
        self.token = token
        self.bin = os.environ.get("SMLT_BIN_DIR", os.path.join(os.getcwd(), "bin"))
        self.tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self.dir = self.tmp.name
        pf = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "coordinator.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(self.bin, "smlt-coordinator"), "--listen", "127.0.0.1:0",
             "--port-file", pf, "--data-dir", os.path.join(self.dir, "state"),
             "--admin-token", token, "--bin-dir", self.bin, "--log-level", "info"],
            stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30
        while not (os.path.exists(pf) and os.path.getsize(pf) > 0):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the coordinator did not start")
            time.sleep(0.05)
        with open(pf) as f:
            self.url = "http://127.0.0.1:%d" % int(f.read().strip())

    def smltctl(self, *args):
        """Runs smltctl against this coordinator; its stdout (RuntimeError when it fails)."""
        r = subprocess.run([os.path.join(self.bin, "smltctl"), "--url", self.url, "--token",
                            self.token] + list(args), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("smltctl %s: %s%s" % (args, r.stdout, r.stderr))
        return r.stdout

    def job(self, jid):
        """The job's view (smltctl --json status)."""
        return json.loads(self.smltctl("--json", "status", jid))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if os.environ.get("SMLT_TEST_VERBOSE"):
            with open(os.path.join(self.dir, "coordinator.log")) as f:
                sys.stderr.write(f.read()[-8000:])
        self.tmp.cleanup()
