#!/usr/bin/env python3
"""Soak test for Logicredit Auth (Python 3.11 standard library only; not run in CI).

Drives a mixed load — registrations, logins, session checks, logouts — against one running
instance on 127.0.0.1 for a fixed time (10 minutes by default) from a pool of threads,
samples the server's resident memory and open file descriptors from /proc/<pid>/ every
10 s, prints one row per minute (requests, error rate, p50/p99 latency, RSS, FDs) and
writes everything to a JSON file.

    # the service, with the abuse limits raised (every request comes from 127.0.0.1) and
    # its log in a file (no SMTP configured: each email is a JSON log line)
    RATE_LIMIT_AUTH=1000000/600 LOCKOUT_THRESHOLD=1000000 COOKIE_SECURE=false \\
        target/release/logicredit-auth serve > /tmp/lcauth.log 2>&1 &
    python3 bench/soak.py --url http://127.0.0.1:8000 --pid $! --log /tmp/lcauth.log

Users to log in with are created first: registered through the API and verified with the
code read from the server's log (--log), or made with the CLI (--create-user-cli PATH,
which must see the server's DATABASE_URL in the environment). Exit status: 0 when the run
completed with no errors, 1 when any request failed, 2 for a usage or setup error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD = "soak test passphrase with enough entropy 42"
CODE = re.compile(r"Or enter this code: ([A-Za-z0-9]{32})")
# Share of each operation in the mix (weights).
MIX = {"session_check": 50, "login": 25, "register": 15, "logout": 10}
EXPECTED = {"session_check": 200, "login": 200, "register": 201, "logout": 200}
SESSIONS_PER_THREAD = 20


def fail(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr)
    sys.exit(2)


# ------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection, reopened after any error."""

    # Shared by all clients: requests re-sent because a kept-alive connection turned out
    # to be closed by the server (see docs/RELIABILITY.md, finding 3).
    stale_retries = 0
    _lock = threading.Lock()

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.served = 0  # requests answered on the current connection

    def request(
        self, method: str, path: str, body: dict | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, list[str]], bytes]:
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        while True:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.served = 0
            reused = self.served > 0
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
            ):
                self.close()
                if not reused:
                    raise
                # The server had closed this kept-alive connection before reading the
                # request: send it again on a new connection, as browsers do.
                with Client._lock:
                    Client.stale_retries += 1
                continue
            except (http.client.HTTPException, OSError):
                self.close()
                raise
            self.served += 1
            grouped: dict[str, list[str]] = {}
            for name, value in response.getheaders():
                grouped.setdefault(name.lower(), []).append(value)
            if response.getheader("connection", "").lower() == "close":
                self.close()
            return response.status, grouped, payload

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Session:
    cookie: str  # "name=value"
    csrf: str


def session_from(headers: dict[str, list[str]], payload: bytes) -> Session | None:
    cookie = None
    for value in headers.get("set-cookie", []):
        pair = value.split(";", 1)[0]
        name, _, token = pair.partition("=")
        if name.strip() != "csrf_token" and token:
            cookie = pair.strip()
    try:
        csrf = json.loads(payload).get("csrf_token")
    except ValueError:
        csrf = None
    return Session(cookie, csrf) if cookie and csrf else None


# ------------------------------------------------------------------------------------
# Setup: users to log in with
# ------------------------------------------------------------------------------------


def codes_from_log(log: Path, wanted: set[str], timeout: float) -> dict[str, str]:
    """Verification codes from the server's JSON log lines, by recipient."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if "Or enter this code" not in line:
                    continue
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                to = str(fields.get("to", "")).lower()
                match = CODE.search(str(fields.get("body", "")))
                if to in wanted and match:
                    found[to] = match.group(1)
        if wanted <= found.keys():
            return found
        time.sleep(0.5)
    missing = sorted(wanted - found.keys())
    fail(f"no verification code in {log} for {len(missing)} users (e.g. {missing[:3]})")
    return found


def create_users(args: argparse.Namespace, host: str, port: int, run: str) -> list[str]:
    emails = [f"soak-{run}-user{i}@example.com" for i in range(args.users)]
    if args.create_user_cli:
        for email in emails:
            result = subprocess.run(
                [args.create_user_cli, "create-user", "--email", email, "--role", "user"],
                input=PASSWORD + "\n",
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if result.returncode != 0:
                fail(f"create-user {email} failed: {result.stdout}{result.stderr}")
        return emails
    client = Client(host, port, args.timeout)
    for email in emails:
        status, _, payload = client.request(
            "POST", "/auth/register", {"email": email, "password": PASSWORD}
        )
        if status != 201:
            fail(f"registering {email}: {status} {payload[:200]!r}")
    codes = codes_from_log(Path(args.log), set(emails), timeout=60)
    for email in emails:
        status, _, payload = client.request(
            "POST", "/auth/verify-email", {"token": codes[email]}
        )
        if status != 200:
            fail(f"verifying {email}: {status} {payload[:200]!r}")
    client.close()
    return emails


# ------------------------------------------------------------------------------------
# Load
# ------------------------------------------------------------------------------------


@dataclass
class Results:
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (seconds since start, operation, latency in ms, ok)
    records: list[tuple[float, str, float, bool]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, at: float, op: str, latency_ms: float, outcome: str | None) -> None:
        with self.lock:
            self.records.append((at, op, latency_ms, outcome is None))
            if outcome is not None:
                key = f"{op}: {outcome}"
                self.errors[key] = self.errors.get(key, 0) + 1


def worker(
    index: int,
    args: argparse.Namespace,
    host: str,
    port: int,
    users: list[str],
    run: str,
    started: float,
    deadline: float,
    results: Results,
) -> None:
    rng = random.Random(f"{run}-{index}")
    client = Client(host, port, args.timeout)
    sessions: list[Session] = []
    operations = list(MIX)
    weights = [MIX[op] for op in operations]
    for iteration in range(args.max_requests_per_thread):  # bounded
        if time.monotonic() >= deadline:
            break
        op = rng.choices(operations, weights)[0]
        if op in ("session_check", "logout") and not sessions:
            op = "login"
        session = None
        if op == "register":
            email = f"soak-{run}-t{index}-{iteration}@example.com"
            method, path, body, headers = "POST", "/auth/register", {
                "email": email,
                "password": PASSWORD,
            }, {}
        elif op == "login":
            method, path, body, headers = "POST", "/auth/login", {
                "email": rng.choice(users),
                "password": PASSWORD,
            }, {}
        elif op == "session_check":
            session = rng.choice(sessions)
            method, path, body, headers = "GET", "/auth/me", None, {"Cookie": session.cookie}
        else:
            session = sessions.pop(rng.randrange(len(sessions)))
            method, path, body, headers = "POST", "/auth/logout", None, {
                "Cookie": session.cookie,
                "X-CSRF-Token": session.csrf,
            }
        sent = time.monotonic()
        try:
            status, response_headers, payload = client.request(method, path, body, headers)
        except (http.client.HTTPException, OSError) as error:
            results.add(sent - started, op, (time.monotonic() - sent) * 1000, type(error).__name__)
            continue
        latency_ms = (time.monotonic() - sent) * 1000
        outcome = None if status == EXPECTED[op] else str(status)
        if op == "login" and outcome is None:
            issued = session_from(response_headers, payload)
            if issued is None:
                outcome = "200 without a session"
            else:
                sessions.append(issued)
                if len(sessions) > SESSIONS_PER_THREAD:
                    # Keep the pool bounded; the oldest session just idles out.
                    sessions.pop(0)
        results.add(sent - started, op, latency_ms, outcome)
    client.close()


# ------------------------------------------------------------------------------------
# Resource sampling
# ------------------------------------------------------------------------------------


def sample_process(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    values = dict(
        line.split(":", 1) for line in status.splitlines() if ":" in line
    )
    return {
        "rss_kib": int(values["VmRSS"].split()[0]),
        "threads": int(values["Threads"].strip()),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def sampler(pid: int, started: float, stop: threading.Event, interval: float, out: list) -> None:
    while True:
        try:
            sample = sample_process(pid)
        except (OSError, KeyError, ValueError) as error:
            sample = {"error": str(error)}
        sample["t"] = round(time.monotonic() - started, 1)
        out.append(sample)
        if stop.wait(interval):
            return


# ------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def minute_rows(
    results: Results, samples: list[dict], minutes: int, duration: float
) -> list[dict]:
    rows = []
    for minute in range(minutes):
        lo, hi = minute * 60, (minute + 1) * 60
        # The last minute may be partial.
        seconds = max(1.0, min(hi, duration) - lo)
        window = [r for r in results.records if lo <= r[0] < hi]
        if not window:
            continue
        latencies = [r[2] for r in window]
        errors = sum(1 for r in window if not r[3])
        in_minute = [s for s in samples if lo <= s["t"] < hi and "rss_kib" in s]
        last = in_minute[-1] if in_minute else {}
        rows.append(
            {
                "minute": minute + 1,
                "requests": len(window),
                "errors": errors,
                "error_rate": errors / len(window),
                "rps": len(window) / seconds,
                "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99),
                "rss_mib": round(last["rss_kib"] / 1024, 1) if last else None,
                "fds": last.get("fds"),
                "threads": last.get("threads"),
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        f"{'min':>3} {'requests':>9} {'req/s':>7} {'errors':>7} {'err %':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8} {'FDs':>5}"
    )
    for row in rows:
        print(
            f"{row['minute']:>3} {row['requests']:>9} {row['rps']:>7.1f} {row['errors']:>7} "
            f"{100 * row['error_rate']:>6.2f}% {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['rss_mib'] if row['rss_mib'] is not None else '-':>8} "
            f"{row['fds'] if row['fds'] is not None else '-':>5}"
        )


# ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://127.0.0.1:<port> (loopback only)")
    parser.add_argument("--pid", required=True, type=int, help="the server's process id")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--log", help="the server's log file (verification codes)")
    source.add_argument("--create-user-cli", help="path of the logicredit-auth binary")
    parser.add_argument("--duration", type=float, default=600, help="seconds (default 600)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--users", type=int, default=20, help="accounts to log in with")
    parser.add_argument("--sample-interval", type=float, default=10)
    parser.add_argument("--timeout", type=float, default=30, help="per request, seconds")
    parser.add_argument(
        "--max-requests-per-thread", type=int, default=10_000_000, help="loop bound"
    )
    parser.add_argument("--json", default=None, help="output file (default soak-<time>.json)")
    args = parser.parse_args()

    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or url.hostname != "127.0.0.1" or url.path not in ("", "/"):
        fail("--url must be http://127.0.0.1:<port> (this script only targets loopback)")
    host, port = "127.0.0.1", url.port or 80
    if not Path(f"/proc/{args.pid}").exists():
        fail(f"no process {args.pid}")
    if args.threads < 1 or args.users < 1 or args.duration <= 0:
        fail("--threads, --users and --duration must be positive")

    run = secrets.token_hex(3)
    probe = Client(host, port, args.timeout)
    status, _, payload = probe.request("GET", "/readyz")
    probe.close()
    if status != 200:
        fail(f"/readyz answered {status}: {payload[:200]!r}")
    print(f"soak {run}: creating {args.users} users …", flush=True)
    users = create_users(args, host, port, run)

    results = Results()
    samples: list[dict] = []
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + args.duration
    sampling = threading.Thread(
        target=sampler, args=(args.pid, started, stop, args.sample_interval, samples), daemon=True
    )
    sampling.start()
    threads = [
        threading.Thread(
            target=worker,
            args=(i, args, host, port, users, run, started, deadline, results),
            daemon=True,
        )
        for i in range(args.threads)
    ]
    print(
        f"soak {run}: {args.threads} threads for {args.duration:.0f} s against {args.url} "
        f"(pid {args.pid}); mix {MIX}",
        flush=True,
    )
    for thread in threads:
        thread.start()
    reported = 0
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        elapsed_minutes = int((time.monotonic() - started) // 60)
        if elapsed_minutes > reported:
            row = minute_rows(results, samples, elapsed_minutes, args.duration)[-1:]
            if row:
                r = row[0]
                print(
                    f"  minute {r['minute']}: {r['requests']} requests, "
                    f"{100 * r['error_rate']:.2f}% errors, p50 {r['p50_ms']:.1f} ms, "
                    f"p99 {r['p99_ms']:.1f} ms, RSS {r['rss_mib']} MiB, {r['fds']} FDs",
                    flush=True,
                )
            reported = elapsed_minutes
    for thread in threads:
        thread.join()
    stop.set()
    sampling.join()

    minutes = int(args.duration // 60) + 1
    rows = minute_rows(results, samples, minutes, args.duration)
    total = len(results.records)
    failed = sum(1 for r in results.records if not r[3])
    ops = {}
    for op in MIX:
        latencies = [r[2] for r in results.records if r[1] == op]
        ops[op] = {
            "requests": len(latencies),
            "errors": sum(1 for r in results.records if r[1] == op and not r[3]),
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "mean_ms": statistics.fmean(latencies) if latencies else None,
        }
    rss = [s["rss_kib"] for s in samples if "rss_kib" in s]
    fds = [s["fds"] for s in samples if "fds" in s]
    print()
    print_table(rows)
    print()
    print(
        f"total: {total} requests, {failed} errors ({100 * failed / max(total, 1):.2f}%); "
        f"RSS {min(rss, default=0) / 1024:.1f}–{max(rss, default=0) / 1024:.1f} MiB; "
        f"FDs {min(fds, default=0)}–{max(fds, default=0)}"
    )
    if Client.stale_retries:
        print(f"  {Client.stale_retries} requests re-sent on a new connection (stale keep-alive)")
    for key, count in sorted(results.errors.items(), key=lambda kv: -kv[1]):
        print(f"  {count:>7}  {key}")
    if any(key.endswith(": 429") for key in results.errors):
        print("  (429: raise RATE_LIMIT_AUTH and LOCKOUT_THRESHOLD on the server for a soak)")

    report = {
        "run": run,
        "url": args.url,
        "pid": args.pid,
        "duration_s": args.duration,
        "threads": args.threads,
        "users": args.users,
        "mix": MIX,
        "started_at": started_at,
        "totals": {
            "requests": total,
            "errors": failed,
            "stale_connection_retries": Client.stale_retries,
        },
        "errors": results.errors,
        "operations": ops,
        "minutes": rows,
        "samples": samples,
    }
    output = Path(args.json or f"soak-{time.strftime('%Y%m%dT%H%M%S')}.json")
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
