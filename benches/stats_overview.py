#!/usr/bin/env python3
"""The cost of `GET /api/stats?minutes=60` against the rows in its window,
measured against a real `scriptbox serve`.

    python3 benches/stats_overview.py target/release/scriptbox[,OTHER_BINARY...] [ROWS ...]

For each row count (default 10000 100000): a fresh SQLite file with one
tenant and that many executions spread over the last hour (8 in 9
completed, 1 in 9 failed, durations 1-500 ms), then each binary given (so
two builds can be compared side by side on the same file) serves it and
answers seven requests. Reports the median answer time, the runs the answer
counted (a check that every binary read the same rows) and the server's
peak RSS. Only loopback is used; needs Python's standard library only.
"""

import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ADMIN, PUBLIC = "127.0.0.1:18190", "127.0.0.1:18191"


def uuid7(unix_ms):
    """A random UUIDv7 of the millisecond `unix_ms`, as a node makes its
    execution ids (the overview finds its window by them)."""
    value = (unix_ms << 80) | (random.getrandbits(80) & ~(0xF << 76) & ~(0x3 << 62))
    value |= (0x7 << 76) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def make_database(path, binary, rows):
    out = subprocess.run(
        [binary, "tenant", "create", "acme", "--database", f"sqlite://{path}"],
        capture_output=True, text=True, check=True,
    ).stdout
    key = out.strip().split()[-1]
    con = sqlite3.connect(path)
    tenant = con.execute("SELECT id FROM tenants").fetchone()[0]
    now = int(time.time() * 1000)
    random.seed(rows)
    values = []
    for _ in range(rows):
        status = random.choice(["completed"] * 8 + ["failed"])
        queued_at = now - random.randint(0, 59 * 60_000)
        values.append((
            uuid7(queued_at), tenant, "s", 1, "manual", status, "null", "[]", 0, "n",
            queued_at, random.randint(1, 500),
            "js_error" if status == "failed" else None,
        ))
    con.executemany(
        "INSERT INTO executions (id, tenant_id, script_id, script_version, trigger_type, "
        "status, input, logs, attempt, node_id, queued_at, duration_ms, error_type) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        values,
    )
    con.commit()
    con.close()
    return key


def measure(binary, path, key):
    server = subprocess.Popen(
        [binary, "serve", "--database", f"sqlite://{path}",
         "--listen", ADMIN, "--public-listen", PUBLIC],
        stderr=subprocess.DEVNULL,
        # Retention would trim the one script's rows to its
        # max_per_script while the answers are timed.
        env={**os.environ, "SCRIPTBOX_RETENTION_ENABLED": "false"},
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://{ADMIN}/health/live")
                break
            except OSError:
                time.sleep(0.1)
        times, body = [], b""
        for _ in range(7):
            request = urllib.request.Request(
                f"http://{ADMIN}/api/stats?minutes=60",
                headers={"Authorization": f"Bearer {key}"},
            )
            started = time.perf_counter()
            body = urllib.request.urlopen(request).read()
            times.append((time.perf_counter() - started) * 1000)
        with open(f"/proc/{server.pid}/status") as status:
            peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM"))
    finally:
        server.terminate()
        server.wait()
    counted = sum(sum(m["runs"].values()) for m in json.loads(body)["minutes"])
    return statistics.median(times), counted, peak // 1024


def main():
    binaries = sys.argv[1].split(",")
    counts = [int(n) for n in sys.argv[2:]] or [10_000, 100_000]
    with tempfile.TemporaryDirectory() as dir:
        for rows in counts:
            path = os.path.join(dir, f"stats-{rows}.db")
            key = make_database(path, binaries[0], rows)
            for binary in binaries:
                median, counted, peak = measure(binary, path, key)
                print(f"{binary:40} rows={rows:>7} counted={counted:>7} "
                      f"median={median:8.1f} ms peak RSS={peak} MB")


if __name__ == "__main__":
    main()
