#!/bin/bash
# deploy/lambda/package.sh: the AWS Lambda zip of the worker, for the custom runtimes
# (provided.al2023, provided.al2). Its layout:
#   bootstrap                  a /bin/sh script: execs the bundled loader on bin/smlt-worker
#   bin/smlt-worker            the worker (stripped); with AWS_LAMBDA_RUNTIME_API set it runs the
#                              Runtime API loop
#   lib/ld-linux-x86-64.so.2   Debian 12's dynamic loader, and every shared library smlt-worker
#   lib/*.so*                  needs (ldd), glibc's own among them
#   etc/ca-certificates.crt    Debian's CA bundle (SSL_CERT_FILE and CURL_CA_BUNDLE point to it)
#
# Why glibc and the loader are bundled: smlt-worker is built on Debian 12 (glibc 2.36), and its
# libraries ask for GLIBC_2.36 symbols. provided.al2023 has glibc 2.34 and provided.al2 2.26, so
# the host's loader cannot run them. Run through its own loader with --library-path, the binary
# uses nothing of the host's but the kernel. deploy/README.md says more.
#
# Reproducible: the same binary and the same Debian packages give the same zip, byte for byte
# (sorted names, fixed modes, every time stamp SOURCE_DATE_EPOCH: the last commit's time unless
# set, no extra fields).
#   --bin DIR     where smlt-worker is (default: build/bin)
#   -o FILE       the zip (default: build/lambda/smlt-worker-lambda.zip)
set -e
SMLT_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
bin=$SMLT_ROOT/build/bin
out=$SMLT_ROOT/build/lambda/smlt-worker-lambda.zip
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift ;;
    -o) out=$2; shift ;;
    *) echo "usage: deploy/lambda/package.sh [--bin DIR] [-o FILE]" >&2; exit 2 ;;
    esac
    shift
done
worker=$bin/smlt-worker
[ -x "$worker" ] || { echo "smlt: $worker is missing: build the project first" >&2; exit 1; }
command -v zip >/dev/null || { echo "smlt: zip is missing (apt-get install zip)" >&2; exit 1; }
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$SMLT_ROOT" log -1 --format=%ct 2>/dev/null || echo 315532800)
fi
case $(uname -m) in
x86_64) loader=ld-linux-x86-64.so.2 ;;
aarch64) loader=ld-linux-aarch64.so.1 ;;
*) echo "smlt: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/etc"
strip -o "$stage/bin/smlt-worker" "$worker"

# Every library ldd resolves, under the name the binary asks for (its soname), and the loader.
# A library ldd cannot find is an error here, not on Lambda.
if ldd "$worker" | grep -q "not found"; then
    ldd "$worker" | grep "not found" >&2
    exit 1
fi
ldd "$worker" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3} $1 ~ /^\// {print "LOADER", $1}' |
    while read -r name path; do
        [ "$name" = LOADER ] && name=$loader
        cp -L "$path" "$stage/lib/$name"
    done
[ -f "$stage/lib/$loader" ] || { echo "smlt: ldd named no $loader" >&2; exit 1; }
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$stage/etc/ca-certificates.crt"
fi

cat >"$stage/bootstrap" <<EOF
#!/bin/sh
# The AWS Lambda custom runtime's entry (SMLT-C deploy/lambda/package.sh). smlt-worker runs on the
# loader and the libraries in lib/ (Debian 12's glibc), not the host's: see deploy/README.md.
# With AWS_LAMBDA_RUNTIME_API set it serves the Runtime API; arguments go to smlt-worker.
here=\${LAMBDA_TASK_ROOT:-\$(dirname "\$0")}
if [ -f "\$here/etc/ca-certificates.crt" ]; then
    export SSL_CERT_FILE="\${SSL_CERT_FILE:-\$here/etc/ca-certificates.crt}"
    export CURL_CA_BUNDLE="\${CURL_CA_BUNDLE:-\$here/etc/ca-certificates.crt}"
fi
exec "\$here/lib/$loader" --library-path "\$here/lib" --argv0 smlt-worker \\
    "\$here/bin/smlt-worker" "\$@"
EOF

chmod 0755 "$stage/bootstrap" "$stage/bin/smlt-worker" "$stage/lib/$loader"
find "$stage/lib" "$stage/etc" -type f ! -name "$loader" -exec chmod 0644 {} +
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$(dirname "$out")"
rm -f "$out.part"
# -X: no extra fields (uid, gid, extended time stamps); -D: no directory entries; names sorted,
# times in UTC: the zip's bytes depend on the files alone.
(cd "$stage" && find . -type f | sed 's|^\./||' | LC_ALL=C sort |
    TZ=UTC zip -q -X -D -9 "$out.part" -@)
mv "$out.part" "$out"
echo "smlt: $out: $(du -k "$out" | cut -f1) KiB zipped, $(du -sk "$stage" | cut -f1) KiB unzipped," \
    "$(find "$stage/lib" -type f | wc -l) libraries" >&2
