#!/usr/bin/env python3
"""Isolation around the sandbox, measured against a real `scriptbox serve`.

    python3 benches/tenant_flood.py target/release/scriptbox [OTHER_BINARY ...]

For each binary given (so two builds can be compared side by side in one
run), on a fresh SQLite file and default settings:

1. flood: tenant A starts 64 async runs that each wait 8 s on a slow local
   HTTP server; then tenant B runs a trivial script and saves a script.
   Reports how long B's run and save (started together) took.
2. memory: tenant A starts 60 async runs with 1.9 MB inputs against the
   same slow server; reports the server's RSS before and while they wait.
3. logs: `for (;;) console.log()` with default limits; reports the stored
   log lines and the size of `GET /api/executions/{id}`.

Only loopback is used. Needs nothing beyond Python's standard library.
"""

import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SLOW_SECONDS = 8


class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(SLOW_SECONDS)
        try:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass  # the server under test was stopped meanwhile

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, key, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, binary, slow_port):
        self.dir = tempfile.mkdtemp(prefix="scriptbox-flood-")
        self.db = f"sqlite://{self.dir}/flood.db"
        self.port = free_port()
        args = [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--database", self.db]
        help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
        if "--public-listen" in help_text:
            args += ["--public-listen", f"127.0.0.1:{free_port()}"]
        env = dict(os.environ, SCRIPTBOX_FETCH_ALLOW='["127.0.0.1"]',
                   SCRIPTBOX_SANDBOX_TIMEOUT_MS="60000", SCRIPTBOX_FETCH_TIMEOUT_MS="60000")
        self.keys = {name: self.tenant(binary, name) for name in ("flooder", "other")}
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/live", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        self.slow_port = slow_port

    def tenant(self, binary, name):
        out = subprocess.run([binary, "tenant", "create", name, "--database", self.db],
                             capture_output=True, text=True, check=True).stdout
        return out.strip().splitlines()[-1]

    def script(self, tenant, source, **extra):
        status, body = call(self.port, "POST", "/api/scripts", self.keys[tenant],
                            dict(name=f"s{time.monotonic_ns()}", trigger_type="manual", source=source, **extra))
        assert status == 201, body
        return json.loads(body)["id"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def flood(server):
    slow = server.script("flooder", f"export default async () => (await fetch('http://127.0.0.1:{server.slow_port}/')).status")
    quick = server.script("other", "export default () => 'fine'")
    statuses = [call(server.port, "POST", f"/api/scripts/{slow}/run?async=true", server.keys["flooder"])[0]
                for _ in range(64)]
    time.sleep(0.5)
    # One run and one save, side by side, while the flood holds its slots
    # (a second try would only measure the drained flood).
    took = {}

    def timed(name, *args):
        t = time.monotonic()
        call(server.port, *args)
        took[name] = round(time.monotonic() - t, 3)

    threads = [
        threading.Thread(target=timed, args=("other_run_s", "POST", f"/api/scripts/{quick}/run", server.keys["other"])),
        threading.Thread(target=timed, args=("other_save_s", "PUT", f"/api/scripts/{quick}", server.keys["other"],
                                             {"source": "export default () => 'fine again'"})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = sum(1 for s in statuses if s == 202)
    refused = sum(1 for s in statuses if s == 429)
    return {"flood_accepted": accepted, "flood_refused_429": refused, **took}


def memory(server):
    slow = server.script("flooder", f"export default async (input) => (await fetch('http://127.0.0.1:{server.slow_port}/')).status + input.pad.length")
    before = rss_mb(server.proc.pid)
    pad = "x" * 1_900_000
    threads = [threading.Thread(target=call, args=(server.port, "POST", f"/api/scripts/{slow}/run?async=true",
                                                   server.keys["flooder"], {"input": {"pad": pad}}))
               for _ in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1)
    return {"rss_before_mb": round(before), "rss_waiting_mb": round(rss_mb(server.proc.pid))}


def logs(server):
    sid = server.script("other", "export default () => { for (;;) console.log(); }")
    status, body = call(server.port, "POST", f"/api/scripts/{sid}/run", server.keys["other"])
    run = json.loads(body)
    status, reply = call(server.port, "GET", f"/api/executions/{run['id']}", server.keys["other"])
    return {"log_lines": len(run.get("logs") or []), "execution_reply_bytes": len(reply),
            "log_run_error": run.get("error_type")}


def main():
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    slow = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    for binary in binaries:
        results = {"binary": binary}
        for measure in (flood, memory, logs):
            server = Server(binary, slow.server_address[1])
            try:
                results.update(measure(server))
            finally:
                server.stop()
            time.sleep(SLOW_SECONDS + 1)  # let the slow server's sleepers finish
        print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
