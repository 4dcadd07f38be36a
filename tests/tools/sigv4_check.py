#!/usr/bin/python3
"""sigv4_check.py: checks an AWS SigV4 Authorization header against botocore's signer.

Reads one JSON object on stdin: {"method", "url", "headers": {name: value}, "body",
"access_key", "secret_key", "region", "service"}, where headers are the request's headers as
the server received them (Authorization and X-Amz-Date among them). Signs the same request
with botocore (Debian python3-botocore), over the headers the given signature says it signed
and at its X-Amz-Date, and prints "ok" (exit 0) when the signatures match, or both (exit 1).
Used by tests/unit/test_coord_backends.c and test_data_fetch.c; a test tool, not part of what
ships. tests/tools/lambda_emulator.py checks every request it gets the same way."""
import json
import re
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main():
    req = json.load(sys.stdin)
    headers = {k.lower(): v for k, v in req["headers"].items()}
    auth = headers.get("authorization", "")
    m = re.match(r"AWS4-HMAC-SHA256 Credential=[^,]+, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)", auth)
    if not m:
        print("no SigV4 Authorization header: %r" % auth)
        return 1
    signed = m.group(1).split(";")
    want = m.group(2)
    creds = Credentials(req["access_key"], req["secret_key"], req.get("session_token"))
    aws_req = AWSRequest(method=req["method"], url=req["url"], data=req["body"].encode(),
                         headers={h: headers[h] for h in signed if h in headers})
    signer = SigV4Auth(creds, req["service"], req["region"])
    aws_req.context["timestamp"] = headers["x-amz-date"]
    # botocore signs the headers it is given (minus a few it never signs); give it exactly
    # the ones the signature names, so that both sign the same canonical request.
    canonical = signer.canonical_request(aws_req)
    sts = signer.string_to_sign(aws_req, canonical)
    got = signer.signature(sts, aws_req)
    if got == want:
        print("ok")
        return 0
    print("mismatch: request %s, botocore %s\ncanonical request:\n%s" % (want, got, canonical))
    return 1


if __name__ == "__main__":
    sys.exit(main())
