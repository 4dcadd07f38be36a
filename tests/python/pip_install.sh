#!/bin/bash
# python.pip_install: `pip install worker/python` works offline from the tree (into a fresh
# venv that sees Debian's python3-torch), and the installed package imports and reaches real
# shards without the build tree on its path. Usage: pip_install.sh BUILD_DIR
set -e
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d /tmp/smlt-pip.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 -m venv --system-site-packages "$TMP/venv"
SMLT_BUILD_DIR=$BUILD "$TMP/venv/bin/pip" install -q --no-index --no-build-isolation \
    "$SRC/worker/python"
cd "$TMP"
SMLT_BIN_DIR=$BUILD/bin PYTHONPATH=$SRC/tests/python "$TMP/venv/bin/python" - <<'PY'
import os, numpy as np, smlt, smlt.torch
from shards import Shards
assert "site-packages" in smlt.__file__, smlt.__file__
with Shards(1) as s:
    with smlt.job_setup(s.addrs, s.admin_token, [("w", (4, 8))], optim="sgd", lr=1.0) as a:
        a.set_params(np.ones(32, np.float32))
        with smlt.Client(s.addrs, s.token) as c:
            out = np.zeros(32, np.float32)
            c.sync(0, np.ones(32, np.float32), out)
            assert (out == 0).all(), out
print("pip install worker/python: installed at %s, synced through a shard" % os.path.dirname(smlt.__file__))
PY
