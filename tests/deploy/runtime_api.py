#!/usr/bin/python3
"""tests/deploy/runtime_api.py PORT_FILE: the smallest AWS Lambda Runtime API there is, on
127.0.0.1 (port 0: the bound port goes to PORT_FILE). It hands out one invocation, request id
"deploy-test-1", whose event is not JSON, and prints one line for each request it gets
("GET /2018-06-01/runtime/invocation/next", "POST .../deploy-test-1/error", ...). A later
/next is held open until the process is stopped: the test stops it by its pid. It is here to
show that a packaging (the worker image, the Lambda zip) starts smlt-worker's Runtime API loop;
tests/integration/test_worker_lambda.c tests the loop itself."""
import http.server
import os
import sys
import threading
import time

REQUEST_ID = "deploy-test-1"
handed_out = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=b"{}", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        print("GET " + self.path, flush=True)
        if self.path != "/2018-06-01/runtime/invocation/next":
            return self.reply(404)
        if handed_out.is_set():
            time.sleep(3600)  # no second invocation: the test stops us
            return
        handed_out.set()
        deadline_ms = int((time.time() + 60) * 1000)
        self.reply(200, b"this is not an invocation",
                   [("Lambda-Runtime-Aws-Request-Id", REQUEST_ID),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
                    ("Lambda-Runtime-Invoked-Function-Arn",
                     "arn:aws:lambda:us-east-1:000000000000:function:smlt-worker"),
                    ("Content-Type", "application/json")])

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        print("POST " + self.path + " " + body[:200].decode("utf-8", "replace"), flush=True)
        self.reply(202, b'{"status":"OK"}', [("Content-Type", "application/json")])


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
