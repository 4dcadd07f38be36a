#!/usr/bin/python3
"""lambda_emulator.py: a local AWS Lambda of the project's own, for tests (not part of what ships).

It stands in for AWS: one function, served the way Lambda serves a custom runtime.

  The Invoke API, on --listen (default 127.0.0.1:0; the bound port goes to --port-file, written
  to a temporary file and renamed):
    POST /2015-03-31/functions/NAME/invocations[?Qualifier=Q]
  - the SigV4 signature is checked: recomputed with botocore's signer (Debian python3-botocore)
    over the headers the request says it signed, at its X-Amz-Date, with the credentials this
    emulator accepts (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from its
    own environment), service "lambda", --region. A session token, when one is configured,
    must come in x-amz-security-token. Refusals are 403 with x-amzn-ErrorType
    InvalidSignatureException (or UnrecognizedClientException for an unknown key or token,
    MissingAuthenticationTokenException, IncompleteSignatureException) and {"message": ...};
  - an unknown function or qualifier is 404 ResourceNotFoundException;
  - the event goes to an idle instance of the version (warm), else to a new one (cold), unless
    --concurrency instances are busy: then 429 TooManyRequestsException (Reason
    ReservedFunctionConcurrentInvocationLimitExceeded);
  - the answer is 200 with X-Amz-Executed-Version, the function's response as the body, or
    X-Amz-Function-Error: Unhandled and {"errorMessage", "errorType"} when it failed: an error
    the runtime posted, its exit ("Runtime.ExitError"), or the --timeout passing ("Task timed
    out after N.00 seconds": the instance is killed by its pid);
  - with X-Amz-Log-Type: Tail, X-Amz-Log-Result is the base64 of the last 4 KB of the
    invocation's log: START, what the instance wrote, END, and the REPORT line with Duration,
    Billed Duration (rounded up to the ms; a cold start's Init Duration included, as for
    Lambda's custom runtimes), Memory Size, Max Memory Used (the instance's peak RSS), and
    Init Duration on a cold start.
  Only RequestResponse and DryRun invocations are served.

  The Runtime API of each instance, on a loopback port of its own:
    GET  /2018-06-01/runtime/invocation/next      (blocks; Lambda-Runtime-Aws-Request-Id,
                                                   -Deadline-Ms, -Invoked-Function-Arn,
                                                   -Trace-Id)
    POST /2018-06-01/runtime/invocation/ID/response, .../ID/error, /2018-06-01/runtime/init/error

  The instances run the real bootstrap (--bootstrap: the Lambda zip's, or smlt-worker) as
  subprocesses with Lambda's environment (AWS_LAMBDA_RUNTIME_API, AWS_LAMBDA_FUNCTION_NAME,
  _VERSION, _MEMORY_SIZE, AWS_REGION, LAMBDA_TASK_ROOT (the bootstrap's directory, also the
  working directory), _HANDLER, the credentials; PATH; and the caller's ASAN_*, UBSAN_*,
  LSAN_* and SMLT_* variables, for sanitizer builds and the worker's settings), stdout and
  stderr captured as the instance's log (and copied to this process's stderr). Memory is
  reported, not enforced. Instances stay warm between invocations; an instance whose init
  does not reach GET next within --init-timeout is killed like a timed-out one.

  For the tests, not signed (loopback only):
    GET  /_emulator/stats     counters as JSON (requests, signatures checked / ok / refused,
                              throttles, invocations, cold and warm starts, function errors,
                              timeouts, billed ms and MB-ms, peak concurrency, the instances)
    POST /_emulator/occupy    {"slots": N}: N of the concurrency are taken by callers elsewhere
    POST /_emulator/release   frees them

SIGTERM, SIGINT, SIGHUP and SIGALRM (a test's watchdog) stop it: every instance it started is
stopped by its pid (SIGTERM, 2 s, SIGKILL), never by name. Run it with /usr/bin/python3, which
has botocore."""
import argparse
import base64
import datetime
import hmac
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

try:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:
    sys.exit("lambda_emulator: botocore is missing (Debian python3-botocore; run with "
             "/usr/bin/python3)")

MAX_PAYLOAD = 6 * 1024 * 1024        # Lambda's synchronous request and response limit
MAX_CONTROL = 4096                   # a control request's body
LOG_TAIL = 4096                      # what X-Amz-Log-Result carries
LOG_KEEP = 256 * 1024                # an instance's log kept in memory
CLOCK_SKEW_S = 300                   # X-Amz-Date this far from now is refused
ACCOUNT = "000000000000"
INVOKE_RE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/"
                     r"aws4_request,\s*SignedHeaders=([a-z0-9;._-]+),\s*Signature=([0-9a-f]{64})$")
RUNTIME = "/2018-06-01/runtime"
PASS_ENV = ("ASAN_", "UBSAN_", "LSAN_", "SMLT_")
SIG_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.")


def log(msg):
    sys.stderr.write("%s lambda_emulator: %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Refusal(Exception):
    """An Invoke API error: HTTP status, x-amzn-ErrorType, message, extra body fields."""

    def __init__(self, status, etype, message, **extra):
        super().__init__(message)
        self.status, self.etype, self.message, self.extra = status, etype, message, extra


class Invocation:
    def __init__(self, payload, version, arn, cold):
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.version = version
        self.arn = arn
        self.cold = cold
        self.assigned = time.monotonic()
        self.handed = None           # when GET next returned it
        self.ended = None
        self.deadline_ms = 0
        self.log_start = 0
        self.limit = 0               # "timeout": the limit that passed (s)
        self.outcome = None          # "ok", "error", "timeout", "exit", "init_error", ...
        self.body = b""              # "ok": the response; otherwise the error object (dict)

    def finish(self, outcome, body):
        if self.outcome is None:
            self.outcome, self.body, self.ended = outcome, body, time.monotonic()


class Instance:
    """One execution environment: the bootstrap's process and its Runtime API."""

    def __init__(self, emu, ident, version):
        self.emu, self.id, self.version = emu, ident, version
        self.started = time.monotonic()
        self.init_done = None        # when the first GET next came
        self.proc = None
        self.server = None
        self.port = 0
        self.pending = None          # assigned, not yet handed out by GET next
        self.current = None          # handed out, not yet answered
        self.dead = False            # the process has exited
        self.doomed = False          # killed or being killed: never reused
        self.exit_status = None
        self.served = 0
        self.last_peak = 0           # Max Memory Used last read (MB)
        self.log = bytearray()
        self.log_total = 0           # bytes ever logged (offsets into the log)
        self.log_lock = threading.Lock()

    def busy(self):
        return not self.dead and not self.doomed and (self.pending or self.current)

    def idle(self):
        return not self.dead and not self.doomed and not self.pending and not self.current

    def state(self):
        if self.dead:
            return "dead"
        if self.doomed:
            return "killed"
        if self.init_done is None:
            return "init"
        return "busy" if self.pending or self.current else "idle"

    def log_since(self, start):
        with self.log_lock:
            first = self.log_total - len(self.log)
            return bytes(self.log[max(start, first) - first:])

    def peak_mb(self):
        """The process's peak RSS (VmHWM) in MB, rounded up, or 0 when it cannot be read."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return max(1, math.ceil(int(line.split()[1]) / 1024))
        except (OSError, ValueError, AttributeError):
            pass
        return 0


class Emulator:
    def __init__(self, conf):
        self.conf = conf
        self.cv = threading.Condition()
        self.instances = []
        self.next_id = 1
        self.occupied = 0
        self.stopping = False
        self.stats = dict.fromkeys((
            "requests", "signatures_checked", "signatures_ok", "signatures_refused", "not_found",
            "bad_requests", "throttles", "invocations", "cold_starts", "warm_starts", "responses",
            "function_errors", "timeouts", "billed_ms", "mb_ms", "peak_concurrency",
            "instances_started", "instances_killed"), 0)
        self.stats["executed_versions"] = {}

    # ---- the Invoke API ------------------------------------------------------------------

    def check_signature(self, method, path, headers, body):
        """Raises Refusal unless the request is signed with the configured credentials."""
        c = self.conf
        self.stats["signatures_checked"] += 1
        auth = headers.get("authorization")
        if not auth:
            raise Refusal(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        m = AUTH_RE.match(" ".join(auth.split()))
        if not m:
            raise Refusal(403, "IncompleteSignatureException",
                          "Authorization header requires 'Credential', 'SignedHeaders' and "
                          "'Signature' parameters (AWS4-HMAC-SHA256)")
        key, day, region, service, signed, got = m.groups()
        if key != c.access_key:
            raise Refusal(403, "UnrecognizedClientException",
                          "The security token included in the request is invalid.")
        token = headers.get("x-amz-security-token")
        if (c.session_token or token) and token != c.session_token:
            raise Refusal(403, "UnrecognizedClientException",
                          "The security token included in the request is invalid.")
        amz_date = headers.get("x-amz-date", "")
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            raise Refusal(403, "IncompleteSignatureException",
                          "X-Amz-Date is missing or not in the form YYYYMMDDTHHMMSSZ: %r" % amz_date)
        if abs(when.timestamp() - time.time()) > CLOCK_SKEW_S:
            raise Refusal(403, "InvalidSignatureException",
                          "Signature expired: %s is not within %d s of now" % (amz_date, CLOCK_SKEW_S))
        if day != amz_date[:8] or region != c.region or service != "lambda":
            raise Refusal(403, "InvalidSignatureException",
                          "Credential should be scoped to %s/%s/lambda/aws4_request, not %s/%s/%s"
                          % (amz_date[:8], c.region, day, region, service))
        names = signed.split(";")
        need = ["host", "x-amz-date"] + (["x-amz-security-token"] if c.session_token else [])
        missing = [h for h in need + names if h not in headers]
        if missing or any(h not in names for h in need):
            raise Refusal(403, "InvalidSignatureException",
                          "SignedHeaders must name %s, and every header named must be sent "
                          "(missing: %s)" % (", ".join(need), ", ".join(missing) or "none"))
        req = AWSRequest(method=method, url="http://%s%s" % (headers["host"], path), data=body,
                         headers={h: headers[h] for h in names})
        req.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(c.access_key, c.secret_key, c.session_token or None),
                           "lambda", c.region)
        want = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
        expected = "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s" % (
            signer.scope(req), signer.signed_headers(signer.headers_to_sign(req)), want)
        received = "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, " \
                   "Signature=%s" % (key, day, region, service, signed, got)
        if not hmac.compare_digest(expected.encode(), received.encode()):
            raise Refusal(403, "InvalidSignatureException", SIG_MISMATCH)

    def resolve(self, path):
        """(version, ARN) the Invoke path names, or raises Refusal."""
        c = self.conf
        u = urlsplit(path)
        m = INVOKE_RE.match(u.path)
        if not m:
            raise Refusal(404, "UnknownOperationException", "Unknown operation %s" % u.path)
        name = unquote(m.group(1))
        qs = parse_qs(u.query, keep_blank_values=True)
        qualifier = qs.get("Qualifier", [None])[0]
        arn = "arn:aws:lambda:%s:%s:function:%s" % (c.region, ACCOUNT, name)
        if qualifier:
            arn += ":" + qualifier
        if name != c.function:
            raise Refusal(404, "ResourceNotFoundException", "Function not found: " + arn,
                          Type="User")
        if qualifier is None or qualifier == "$LATEST":
            return "$LATEST", arn
        if qualifier in c.aliases:
            return c.aliases[qualifier], arn
        if qualifier in c.aliases.values():
            return qualifier, arn
        raise Refusal(404, "ResourceNotFoundException", "Function not found: " + arn, Type="User")

    def invoke(self, payload, version, arn):
        """Runs one invocation to its end. Returns it, or raises Refusal (429, 503)."""
        c = self.conf
        with self.cv:
            if self.stopping:
                raise Refusal(503, "ServiceException", "The emulator is stopping")
            idle = [i for i in self.instances if i.idle() and i.version == version]
            inst = idle[-1] if idle else None
            cold = inst is None
            if cold:
                running = sum(1 for i in self.instances if i.busy()) + self.occupied
                if running >= c.concurrency:
                    self.stats["throttles"] += 1
                    raise Refusal(429, "TooManyRequestsException", "Rate Exceeded.",
                                  Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
                                  Type="User")
                inst = Instance(self, self.next_id, version)
                self.next_id += 1
                self.instances.append(inst)
            inv = Invocation(payload, version, arn, cold)
            inv.log_start = inst.log_total
            inst.pending = inv
            self.cv.notify_all()  # its GET next may be waiting
            self.stats["invocations"] += 1
            self.stats["cold_starts" if inv.cold else "warm_starts"] += 1
            running = sum(1 for i in self.instances if i.busy()) + self.occupied
            self.stats["peak_concurrency"] = max(self.stats["peak_concurrency"], running)
        if cold:
            self.start_instance(inst, inv)
        with self.cv:
            self.wait_for(inst, inv)
        return inst, inv

    def wait_for(self, inst, inv):
        """Waits (holding cv) until inv has ended: answered, failed, or out of time."""
        c = self.conf
        while inv.outcome is None:
            now = time.monotonic()
            if self.stopping:
                inv.finish("stopping", {})
            elif inst.dead:
                st = inst.exit_status
                how = "signal: %s" % signal.Signals(-st).name if st < 0 else "exit status %d" % st
                inv.finish("exit", {"errorType": "Runtime.ExitError",
                                    "errorMessage": "RequestId: %s Error: Runtime exited with "
                                                    "error: %s" % (inv.request_id, how)})
            else:
                if inv.handed is not None:
                    limit, end = c.timeout, inv.handed + c.timeout
                elif inst.init_done is None:
                    limit, end = c.init_timeout, inst.started + c.init_timeout
                else:
                    limit, end = c.timeout, inv.assigned + c.timeout
                if now < end:
                    self.cv.wait(end - now)
                    continue
                inv.limit = limit
                inv.finish("timeout", {"errorType": "Sandbox.Timedout",
                                       "errorMessage": "RequestId: %s Error: Task timed out "
                                                       "after %.2f seconds" % (inv.request_id, limit)})
                self.kill(inst, "timed out")
        if inst.pending is inv:
            inst.pending = None
        if inst.current is inv:
            inst.current = None
        self.cv.notify_all()

    def kill(self, inst, why):
        """Kills inst by its pid (holding cv); it is never reused."""
        if inst.doomed:
            return
        inst.doomed = True
        self.stats["instances_killed"] += 1
        if inst.proc is not None and not inst.dead:
            inst.last_peak = inst.peak_mb() or inst.last_peak
            log("instance %d (pid %d): %s: killing it" % (inst.id, inst.proc.pid, why))
            inst.proc.kill()  # by its pid (Popen checks that it has not been reaped)
        self.cv.notify_all()

    def report(self, inst, inv):
        """Bills inv and returns its log tail (bytes) with the REPORT line (none when no
        process ran it)."""
        c = self.conf
        rid = inv.request_id
        if inv.outcome == "start_error":
            return b"START RequestId: %s Version: %s\nEND RequestId: %s\n" % (
                rid.encode(), inv.version.encode(), rid.encode())
        end = inv.ended or time.monotonic()
        duration = (end - (inv.handed if inv.handed is not None else inv.assigned)) * 1000.0
        if inv.outcome == "timeout" and inv.handed is not None:
            duration = c.timeout * 1000.0
        init_ms = None
        if inv.cold:
            init_ms = ((inst.init_done or end) - inst.started) * 1000.0
        billed = max(1, math.ceil(duration + (init_ms or 0.0) - 1e-6))
        inst.last_peak = inst.peak_mb() or inst.last_peak or c.memory
        lines = b"START RequestId: %s Version: %s\n" % (rid.encode(), inv.version.encode())
        lines += inst.log_since(inv.log_start)
        if inv.outcome == "timeout":
            lines += b"%s %s Task timed out after %.2f seconds\n" % (
                datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                .encode(), rid.encode(), inv.limit)
        rep = "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB" \
              "\tMax Memory Used: %d MB\t" % (rid, duration, billed, c.memory, inst.last_peak)
        if init_ms is not None:
            rep += "Init Duration: %.2f ms\t" % init_ms
        lines += ("END RequestId: %s\n%s\n" % (rid, rep)).encode()
        with self.cv:
            self.stats["billed_ms"] += billed
            self.stats["mb_ms"] += billed * c.memory
        return lines[-LOG_TAIL:]

    # ---- instances ----------------------------------------------------------------------

    def instance_env(self, inst):
        c = self.conf
        env = {k: v for k, v in os.environ.items() if k.startswith(PASS_ENV)}
        env.update({
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": c.task_root,
            "LAMBDA_RUNTIME_DIR": c.task_root,
            "_HANDLER": c.handler,
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:%d" % inst.port,
            "AWS_LAMBDA_FUNCTION_NAME": c.function,
            "AWS_LAMBDA_FUNCTION_VERSION": inst.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(c.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/" + c.function,
            "AWS_LAMBDA_LOG_STREAM_NAME": "%s/[%s]%s" % (time.strftime("%Y/%m/%d"), inst.version,
                                                         uuid.uuid4().hex),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": c.region,
            "AWS_DEFAULT_REGION": c.region,
            "AWS_ACCESS_KEY_ID": c.access_key,
            "AWS_SECRET_ACCESS_KEY": c.secret_key,
        })
        if c.session_token:
            env["AWS_SESSION_TOKEN"] = c.session_token
        return env

    def start_instance(self, inst, inv):
        """Starts inst's Runtime API and its bootstrap; on failure, inv ends with the reason."""
        try:
            server = Server(("127.0.0.1", 0), RuntimeHandler)
            server.instance = inst
            inst.server, inst.port = server, server.server_address[1]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            inst.proc = subprocess.Popen([self.conf.bootstrap], cwd=self.conf.task_root,
                                         env=self.instance_env(inst), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as e:
            with self.cv:
                inv.finish("start_error", {"errorType": "Runtime.InvalidEntrypoint",
                                           "errorMessage": "RequestId: %s Error: %s: %s"
                                                           % (inv.request_id, self.conf.bootstrap, e)})
                inst.doomed = inst.dead = True
                self.cv.notify_all()
            if inst.server is not None:
                threading.Thread(target=self.close_server, args=(inst,), daemon=True).start()
            return
        with self.cv:
            self.stats["instances_started"] += 1
        log("instance %d (pid %d, version %s): started, Runtime API 127.0.0.1:%d"
            % (inst.id, inst.proc.pid, inst.version, inst.port))
        threading.Thread(target=self.read_log, args=(inst,), daemon=True).start()
        threading.Thread(target=self.reap, args=(inst,), daemon=True).start()

    def read_log(self, inst):
        prefix = b"[instance %d] " % inst.id
        for line in iter(inst.proc.stdout.readline, b""):
            with inst.log_lock:
                inst.log += line
                inst.log_total += len(line)
                if len(inst.log) > LOG_KEEP:
                    del inst.log[:len(inst.log) - LOG_KEEP]
            sys.stderr.buffer.write(prefix + line)
            sys.stderr.flush()

    def reap(self, inst):
        status = inst.proc.wait()
        with self.cv:
            inst.dead, inst.exit_status = True, status
            self.cv.notify_all()
        log("instance %d (pid %d): exited (%s)" % (inst.id, inst.proc.pid, status))
        self.close_server(inst)

    @staticmethod
    def close_server(inst):
        inst.server.shutdown()
        inst.server.server_close()

    def stop(self):
        """Stops every instance started, by its pid: SIGTERM, 2 s, then SIGKILL."""
        with self.cv:
            self.stopping = True
            procs = [i.proc for i in self.instances if i.proc is not None and not i.dead]
            self.cv.notify_all()
        for p in procs:
            p.terminate()
        end = time.monotonic() + 2.0
        for p in procs:
            try:
                p.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                log("pid %d did not stop in 2 s: SIGKILL" % p.pid)
                p.kill()
                p.wait()

    def snapshot(self):
        with self.cv:
            s = dict(self.stats)
            s["executed_versions"] = dict(self.stats["executed_versions"])
            s["occupied"] = self.occupied
            s["instances"] = [{"id": i.id, "pid": i.proc.pid if i.proc else 0,
                               "version": i.version, "state": i.state(), "served": i.served}
                              for i in self.instances]
            return s


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a peer that went away
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """What both servers share: HTTP/1.1, bodies read up to a limit, JSON answers."""
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the body would wait for the
    # peer's delayed ACK (40 ms on Linux) on every answer.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def read_body(self, limit):
        """The request's body, or None when it is over limit (not read: the connection will
        close) or has no Content-Length."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return None
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > limit:
            self.close_connection = True
            return None
        return self.rfile.read(n) if n else b""

    def reply(self, code, body, headers=()):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class InvokeHandler(Handler):
    def refuse(self, r):
        body = {"message": r.message}
        body.update(r.extra)
        self.reply(r.status, body, [("x-amzn-ErrorType", r.etype),
                                    ("x-amzn-RequestId", str(uuid.uuid4()))])

    def do_GET(self):
        if self.path == "/_emulator/stats":
            return self.reply(200, emu.snapshot())
        self.refuse(Refusal(404, "UnknownOperationException", "Unknown operation " + self.path))

    def do_POST(self):
        if self.path.startswith("/_emulator/"):
            return self.control()
        with emu.cv:
            emu.stats["requests"] += 1
        body = self.read_body(MAX_PAYLOAD)
        try:
            if body is None:
                raise Refusal(413, "RequestTooLargeException",
                              "Request must be smaller than %d bytes for the InvokeFunction "
                              "operation" % MAX_PAYLOAD)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with emu.cv:
                try:
                    emu.check_signature("POST", self.path, headers, body)
                    emu.stats["signatures_ok"] += 1
                except Refusal:
                    emu.stats["signatures_refused"] += 1
                    raise
            try:
                version, arn = emu.resolve(self.path)
            except Refusal:
                with emu.cv:
                    emu.stats["not_found"] += 1
                raise
            kind = headers.get("x-amz-invocation-type", "RequestResponse")
            if kind not in ("RequestResponse", "DryRun"):
                raise Refusal(400, "InvalidParameterValueException",
                              "X-Amz-Invocation-Type %r: this emulator serves RequestResponse "
                              "and DryRun" % kind)
            try:
                json.loads(body or b"{}")
            except ValueError as e:
                raise Refusal(400, "InvalidRequestContentException",
                              "Could not parse request body into json: %s" % e)
            if kind == "DryRun":
                return self.reply(204, b"")
            inst, inv = emu.invoke(body, version, arn)
        except Refusal as r:
            if r.status not in (403, 404, 429):
                with emu.cv:
                    emu.stats["bad_requests"] += 1
            log("Invoke refused: %d %s: %s" % (r.status, r.etype, r.message))
            return self.refuse(r)
        if inv.outcome == "stopping":
            return self.refuse(Refusal(503, "ServiceException", "The emulator is stopping"))
        tail = emu.report(inst, inv)
        hdrs = [("X-Amz-Executed-Version", inv.version), ("x-amzn-RequestId", inv.request_id)]
        if headers.get("x-amz-log-type") == "Tail":
            hdrs.append(("X-Amz-Log-Result", base64.b64encode(tail).decode()))
        with emu.cv:
            versions = emu.stats["executed_versions"]
            versions[inv.version] = versions.get(inv.version, 0) + 1
            if inv.outcome == "ok":
                emu.stats["responses"] += 1
            else:
                emu.stats["function_errors"] += 1
                emu.stats["timeouts"] += inv.outcome == "timeout"
        if inv.outcome == "ok":
            return self.reply(200, inv.body, hdrs)
        hdrs.append(("X-Amz-Function-Error", "Unhandled"))
        self.reply(200, inv.body, hdrs)

    def control(self):
        body = self.read_body(MAX_CONTROL)
        try:
            req = json.loads(body or b"{}") if body is not None else None
        except ValueError:
            req = None
        if not isinstance(req, dict):
            return self.reply(400, {"message": "a JSON object of at most %d bytes" % MAX_CONTROL})
        with emu.cv:
            if self.path == "/_emulator/occupy":
                n = req.get("slots")
                if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= emu.conf.concurrency:
                    return self.reply(400, {"message": "slots: an integer in 1..%d"
                                                       % emu.conf.concurrency})
                emu.occupied = n
            elif self.path == "/_emulator/release":
                emu.occupied = 0
            else:
                return self.reply(404, {"message": "unknown control " + self.path})
            emu.cv.notify_all()
            log("%d of the concurrency occupied elsewhere" % emu.occupied)
            return self.reply(200, {"occupied": emu.occupied})


class RuntimeHandler(Handler):
    """The Runtime API of one instance (self.server.instance)."""

    def runtime_error(self, code, etype, msg):
        self.reply(code, {"errorMessage": msg, "errorType": etype})

    def do_GET(self):
        inst = self.server.instance
        if self.path != RUNTIME + "/invocation/next":
            return self.runtime_error(404, "InvalidRequest", "no such path " + self.path)
        c = emu.conf
        with emu.cv:
            if inst.init_done is None:
                inst.init_done = time.monotonic()
            if inst.current is not None:
                return self.runtime_error(403, "InvalidStateTransition",
                                          "invocation %s has not been answered"
                                          % inst.current.request_id)
            emu.cv.notify_all()
            while inst.pending is None and not (inst.dead or inst.doomed):
                emu.cv.wait()
            inv = inst.pending
            if inv is None:  # the process is gone or being killed: nobody to answer
                self.close_connection = True
                return
            inst.pending, inst.current = None, inv
            inv.handed = time.monotonic()
            inv.deadline_ms = int((time.time() + c.timeout) * 1000)
            emu.cv.notify_all()
        trace = "Root=1-%08x-%s;Parent=%s;Sampled=0" % (int(time.time()), uuid.uuid4().hex[:24],
                                                         uuid.uuid4().hex[:16])
        self.reply(200, inv.payload, [("Lambda-Runtime-Aws-Request-Id", inv.request_id),
                                      ("Lambda-Runtime-Deadline-Ms", str(inv.deadline_ms)),
                                      ("Lambda-Runtime-Invoked-Function-Arn", inv.arn),
                                      ("Lambda-Runtime-Trace-Id", trace)])

    def do_POST(self):
        inst = self.server.instance
        body = self.read_body(MAX_PAYLOAD)
        m = re.match(r"^%s/invocation/([^/]+)/(response|error)$" % RUNTIME, self.path)
        if m is None and self.path != RUNTIME + "/init/error":
            return self.runtime_error(404, "InvalidRequest", "no such path " + self.path)
        with emu.cv:
            if m is None:  # init/error: only before the first event was handed out
                if inst.served or inst.current is not None:
                    return self.runtime_error(403, "InvalidStateTransition",
                                              "init/error after the init phase")
                err = self.error_object(body, "Runtime.Unknown")
                log("instance %d: init error: %s" % (inst.id, err))
                if inst.pending is not None:
                    inst.pending.finish("init_error", err)
                emu.kill(inst, "init failed")
                return self.reply(202, {"status": "OK"})
            inv = inst.current
            if inv is None or inv.request_id != m.group(1):
                return self.runtime_error(400, "InvalidRequestID",
                                          "invocation %s is not this instance's current one"
                                          % m.group(1))
            inst.current = None
            inst.served += 1
            if body is None:
                inv.finish("error", {"errorType": "Function.ResponseSizeTooLarge",
                                     "errorMessage": "Response payload size exceeded maximum "
                                                     "allowed payload size (%d bytes)." % MAX_PAYLOAD})
                emu.cv.notify_all()
                return self.runtime_error(413, "RequestEntityTooLarge", "over %d bytes" % MAX_PAYLOAD)
            if m.group(2) == "response":
                inv.finish("ok", body)
            else:
                inv.finish("error", self.error_object(body, self.headers.get(
                    "Lambda-Runtime-Function-Error-Type", "Runtime.Unknown")))
            emu.cv.notify_all()
        self.reply(202, {"status": "OK"})

    @staticmethod
    def error_object(body, default_type):
        """The runtime's {"errorMessage", "errorType"}, whatever it posted."""
        try:
            o = json.loads(body or b"{}")
        except ValueError:
            o = None
        if not isinstance(o, dict):
            o = {"errorMessage": (body or b"").decode("utf-8", "replace")[:4096]}
        return {"errorMessage": str(o.get("errorMessage", "")),
                "errorType": str(o.get("errorType") or default_type)}


def parse_args(argv):
    p = argparse.ArgumentParser(description="A local AWS Lambda for tests (see the docstring).")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT of the Invoke API")
    p.add_argument("--port-file", help="where the bound port is written")
    p.add_argument("--function", required=True, help="the function's name")
    p.add_argument("--bootstrap", required=True, help="the custom runtime's executable")
    p.add_argument("--alias", action="append", default=[], metavar="NAME=VERSION",
                   help="a qualifier besides $LATEST (repeatable)")
    p.add_argument("--memory", type=int, default=1769, help="MB, 128..10240 (default 1769)")
    p.add_argument("--timeout", type=float, default=900, help="seconds, 1..900 (default 900)")
    p.add_argument("--init-timeout", type=float, default=10, help="seconds (default 10)")
    p.add_argument("--concurrency", type=int, default=1000, help="instances busy at once")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--handler", default="smlt-worker", help="_HANDLER (default smlt-worker)")
    c = p.parse_args(argv)
    if not os.path.isfile(c.bootstrap) or not os.access(c.bootstrap, os.X_OK):
        p.error("--bootstrap %s: not an executable file" % c.bootstrap)
    c.bootstrap = os.path.abspath(c.bootstrap)
    c.task_root = os.path.dirname(c.bootstrap)
    if not 128 <= c.memory <= 10240:
        p.error("--memory: 128..10240 MB")
    if not 1 <= c.timeout <= 900:
        p.error("--timeout: 1..900 s")
    if not 0 < c.init_timeout <= 900:
        p.error("--init-timeout: 0..900 s")
    if not 1 <= c.concurrency <= 100000:
        p.error("--concurrency: 1..100000")
    if not re.match(r"^[A-Za-z0-9_-]{1,64}$", c.function):
        p.error("--function: a plain function name (letters, digits, - and _)")
    c.aliases = {}
    for a in c.alias:
        name, _, version = a.partition("=")
        if not re.match(r"^[A-Za-z0-9_-]{1,128}$", name) or not re.match(r"^[0-9]+$", version):
            p.error("--alias %s: want NAME=VERSION (a version is a number)" % a)
        c.aliases[name] = version
    host, _, port = c.listen.rpartition(":")
    if not host or not port.isdigit():
        p.error("--listen: HOST:PORT")
    c.host, c.port = host, int(port)
    c.access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
    c.secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    c.session_token = os.environ.get("AWS_SESSION_TOKEN", "")
    if not c.access_key or not c.secret_key:
        p.error("the credentials to accept: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(and AWS_SESSION_TOKEN) in the environment")
    return c


emu = None


def main(argv):
    global emu
    conf = parse_args(argv)
    emu = Emulator(conf)
    server = Server((conf.host, conf.port), InvokeHandler)
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(s, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    if conf.port_file:
        tmp = conf.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, conf.port_file)
    log("function %s (%s, %d MB, %g s, concurrency %d; qualifiers $LATEST%s) on %s:%d"
        % (conf.function, conf.bootstrap, conf.memory, conf.timeout, conf.concurrency,
           "".join(" " + a for a in conf.aliases), conf.host, port))
    try:
        while not stop.wait(0.5):
            pass
    finally:
        log("stopping")
        emu.stop()
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
