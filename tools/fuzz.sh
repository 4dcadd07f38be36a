#!/bin/sh
# tools/fuzz.sh: builds the libFuzzer targets of tests/fuzz/ with clang (the project compiled
# with -fsanitize=fuzzer-no-link,address,undefined, the targets linked with
# -fsanitize=fuzzer) into build/fuzz, then runs each for SECONDS (default 30).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]     targets: fuzz_frame fuzz_idx fuzz_csv fuzz_libsvm
#                                                    fuzz_spec fuzz_resp fuzz_ckpt
#
# Corpora live in build/fuzz/corpus/TARGET (seeded with a few valid inputs on the first run and
# kept between runs); a crashing input is written to build/fuzz/artifacts/ and makes the script
# exit 1 after the other targets have run. Reproduce one with: build/fuzz/fuzz/TARGET FILE
set -eu
cd "$(dirname "$0")/.."
secs=${1:-30}
[ $# -gt 0 ] && shift
targets=${*:-"fuzz_frame fuzz_idx fuzz_csv fuzz_libsvm fuzz_spec fuzz_resp fuzz_ckpt"}
build=build/fuzz
command -v clang >/dev/null || { echo "fuzz.sh: clang is needed (apt-get install clang)" >&2; exit 2; }

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSMLT_SANITIZE=OFF \
    -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link $san" \
    -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="$san" >/dev/null
# shellcheck disable=SC2086
make -C "$build" -j"$(nproc)" $targets >/dev/null

mkdir -p "$build/artifacts"
for t in $targets; do mkdir -p "$build/corpus/$t"; done
# Seeds: one valid input per target, so the fuzzers start from inside the formats.
/usr/bin/python3 - "$build/corpus" <<'PY'
import gzip, os, struct, sys
root = sys.argv[1]
def put(t, name, b):
    os.makedirs(os.path.join(root, t), exist_ok=True)
    p = os.path.join(root, t, 'seed-' + name)
    if not os.path.exists(p):
        open(p, 'wb').write(b)
def fnv(h):
    c = 0x811c9dc5
    for i, x in enumerate(h):
        if 20 <= i < 24:
            continue
        c = ((c ^ x) * 0x01000193) & 0xffffffff
    return c
def frame(typ, meta, payload=b'', flags=0):
    h = bytearray(b'SMLT' + bytes([1, typ]) + struct.pack('<HQIIQQ', flags, 7, len(meta), 0,
                                                           len(payload), len(payload)))
    h[20:24] = struct.pack('<I', fnv(h))
    return bytes(h) + meta + payload
# Hello{proto_version=1, token="t"}, then a push-sized payload frame.
put('fuzz_frame', 'hello', b'\x00' + frame(1, b'\x08\x01\x12\x01t'))
put('fuzz_frame', 'two', b'\x01' + frame(1, b'\x08\x01') + frame(32, b'\x08\x05', b'\0' * 64))
labels = bytes([0, 0, 8, 1]) + struct.pack('>I', 3) + bytes([1, 9, 0])
images = bytes([0, 0, 8, 3]) + struct.pack('>III', 3, 2, 2) + bytes(range(12))
put('fuzz_idx', 'plain', b'\x00' + struct.pack('<H', len(labels)) + labels + images)
lz = gzip.compress(labels)
put('fuzz_idx', 'gzip', b'\x01' + struct.pack('<H', len(lz)) + lz + gzip.compress(images))
put('fuzz_csv', 'header', b'\x00label,a,b,c\n1,0.5,2,3\n0,1e-3,-4,5\n\n2,0,0,0\n')
put('fuzz_csv', 'gzip', b'\x08' + gzip.compress(b'0.5,1,2,3\n1,2,3,4\n'))
put('fuzz_csv', 'train-last', b'\x0b' + b'5.1,3.5,0\n4.9,3.0,1\n6.2,2.9,2\n')
put('fuzz_libsvm', 'plain', b'\x00' + b'1 1:0.5 3:2\n0 2:1 4:-1.5\n\n2 1:1\n')
put('fuzz_libsvm', 'binary', b'\x03' + b'-1 1:0.5 2:2\n+1 3:1\n')
put('fuzz_resp', 'slice', b'{"invocation":"job-0001/0/3","status":"slice","next_step":120,"steps":40,'
    b'"samples":1280,"loss":0.5,"elapsed_s":1.5,"init_s":0.2,"cold":false}')
put('fuzz_resp', 'failed', b'{"status":"failed","error":"label column 9 out of range"}')
put('fuzz_spec', 'full', b'{"model":"mlp:784-64-10","dataset":"http://127.0.0.1:1/d","epochs":3,"workers":2,'
    b'"max_workers":4,"shards":1,"max_shards":2,"batch_size":32,"sync":"bsp",'
    b'"optimizer":{"kind":"adam","lr":0.001},"deadline_s":60,"budget_usd":0.5,'
    b'"statistical_efficiency":true,"platform":{"kind":"local","memory_mb":2048},'
    b'"chaos":{"slow_rank":1,"slow_ms":5}}')
put('fuzz_spec', 'csv-options', b'{"model":"logreg:4-3","dataset":"csv:/etc/passwd,/etc/passwd",'
    b'"epochs":2,"dataset_options":{"label_column":"last","header":true,"scale":"standard"}}')
put('fuzz_spec', 'scale', b'{"model":"mlp:784-10-10","dataset":"https://127.0.0.1:1/d","epochs":1,'
    b'"dataset_options":{"scale":"minmax"}}')
put('fuzz_spec', 'ssp', b'{"model":"lenet5","dataset":"http://127.0.0.1:1/d","target_accuracy":0.9,'
    b'"sync":"ssp","staleness":2,"prices":{"gb_s":0.00001}}')
def ckpt(nstate, n, ranks, job, mp, floats):
    import zlib
    meta = b''.join(struct.pack('<Q', 3) for _ in range(ranks)) + \
        b''.join(struct.pack('<Q', 2) for _ in range(ranks)) + job + mp
    meta += struct.pack('<I', zlib.crc32(meta))
    body = b''
    for k in range(1 + nstate):
        raw = b''.join(struct.pack('<f', floats(k, i)) for i in range(n))
        hdr = struct.pack('<I', len(raw))
        body += hdr + struct.pack('<I', zlib.crc32(raw, zlib.crc32(hdr))) + raw
    total = 104 + len(meta) + len(body)
    h = b'SMLTCKPT' + struct.pack('<IIII', 1, 0, 0, nstate) + struct.pack('<QQQ', 4, 16, 16 + n) + \
        struct.pack('<IIQ', ranks, len(mp), total) + struct.pack('<II', len(job), 2) + \
        struct.pack('<QQQ', 4, 4, 4) + struct.pack('<I', 0)
    h += struct.pack('<I', zlib.crc32(h))
    return h + meta + body
# Adam-shaped (2 state arrays, 2 ranks) and SGD-shaped checkpoints; steer byte 7: fix all CRCs.
put('fuzz_ckpt', 'adam', b'\x07' + ckpt(2, 24, 2, b'job', b'\x08\x01\x10\x40', lambda k, i: k + i * 0.5))
put('fuzz_ckpt', 'sgd', b'\x00' + ckpt(0, 40, 1, b'', b'', lambda k, i: 0.0))
PY

failed=0
for t in $targets; do
    echo "== $t: ${secs}s"
    if ! "$build/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$build/artifacts/$t-" "$build/corpus/$t" \
            >"$build/$t.log" 2>&1; then
        echo "fuzz.sh: $t FAILED (see $build/$t.log and $build/artifacts/)" >&2
        tail -n 40 "$build/$t.log" >&2
        failed=1
    else
        grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$build/$t.log" || true
    fi
done
exit $failed
