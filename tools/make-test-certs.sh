#!/bin/bash
# tools/make-test-certs.sh DIR [NAME-OR-IP...]: makes the certificates to try SMLT-C's TLS with
# (and that the tests use), with openssl, into DIR (created; files there are replaced):
#   ca.pem, ca.key           a test CA ("SMLT test CA")
#   server.pem, server.key   a certificate the CA signs for 127.0.0.1, ::1 and localhost, plus
#                            each NAME-OR-IP given (an IP address or a DNS name). It is good
#                            for serving and, for mutual TLS between daemons, as a client
#                            certificate too (extended key usage serverAuth and clientAuth)
#   client.pem, client.key   a client certificate the CA signs (clientAuth), for mutual TLS
#   wrong-ca.pem, wrong-ca.key, wrong.pem, wrong.key
#                            a second CA and a certificate it signs for the same names: what a
#                            peer with the wrong CA presents (the tests check it is refused)
# Keys are EC P-256 (fast handshakes), mode 0600; certificates are valid for 365 days.
#
#   tools/make-test-certs.sh /tmp/certs
#   smlt-ps --listen 127.0.0.1:7000 --token T --tls-cert /tmp/certs/server.pem \
#           --tls-key /tmp/certs/server.key
#
# For a real deployment, use certificates from your own CA (a Kubernetes Secret): these are
# for trying TLS out and for tests.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -lt 1 ] && exit 2 || exit 0
fi
command -v openssl >/dev/null || { echo "make-test-certs: openssl is not installed" >&2; exit 1; }
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
umask 077

days=365
curve=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

# The names every certificate carries, then the ones given.
sans="IP:127.0.0.1,IP:::1,DNS:localhost"
for n in "$@"; do
    case $n in
    *[!0-9.]* | '') if [[ $n == *:* ]]; then sans="$sans,IP:$n"; else sans="$sans,DNS:$n"; fi ;;
    *) sans="$sans,IP:$n" ;;
    esac
done

# make_ca NAME SUBJECT
make_ca() {
    openssl req -x509 "${curve[@]}" -keyout "$1.key" -out "$1.pem" -days "$days" \
        -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# make_leaf NAME CA SUBJECT EXTENDED-KEY-USAGE [SANS]
make_leaf() {
    local ext
    ext=$(mktemp)
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$4"
        [ -n "${5:-}" ] && echo "subjectAltName=$5"
    } >"$ext"
    openssl req -new "${curve[@]}" -keyout "$1.key" -out "$1.csr" -subj "/CN=$3" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
        -out "$1.pem" -days "$days" -extfile "$ext" 2>/dev/null
    rm -f "$1.csr" "$ext"
}

make_ca ca "SMLT test CA"
make_leaf server ca "smlt-server" "serverAuth,clientAuth" "$sans"
make_leaf client ca "smlt-client" "clientAuth"
make_ca wrong-ca "SMLT wrong CA"
make_leaf wrong wrong-ca "smlt-wrong" "serverAuth,clientAuth" "$sans"
rm -f ./*.srl
chmod 0644 ./*.pem
chmod 0600 ./*.key

openssl verify -CAfile ca.pem server.pem client.pem >/dev/null
echo "make-test-certs: CA, server ($sans), client and wrong-CA certificates in $(pwd)"
