#!/usr/bin/env python3
"""Logicredit Auth performance harness (Python 3.11 standard library + wrk).

    python3 bench/run.py                 # full run: release build, both deployments
    python3 bench/run.py --smoke         # a few seconds per phase, small Argon2 costs

Builds the release binary (unless --binary is given), then for each deployment
(embedded: SQLite + in-process store; postgres: PostgreSQL + Redis) starts the service on
127.0.0.1 with a fresh database and measures, in one run:

  (d) the Argon2 ceiling = cores / single-hash seconds (`hash-benchmark`, same ARGON2_*);
  cold start: binary start -> /readyz 200 on an existing database;
  (e) GET /healthz at concurrency 64: the framework ceiling on this machine;
  (a) session-authenticated GET /auth/me at concurrency 64, with the database writes and
      store commands made while it ran;
  (b) password login at concurrency 8; (c) registration at concurrency 8;
  (f) peak RSS of the service in every phase, and under 500 concurrent logins;
  scale-out (postgres only): /auth/me and login on 1 vs 2 instances sharing PostgreSQL +
  Redis; and the cost of per-request logging (RUST_LOG=info vs warn);
  token phases: client_credentials (private_key_jwt), code exchange, refresh rotation,
  introspection, userinfo with DPoP, through bench/reference/driver.mjs (Node), with the
  database rows per code exchange and refresh; --reference: the same against oidc-provider
  (bench/reference/server.mjs), side by side, with the 5 x throughput and 1/5 p99 targets.

It prints one table, computes the target ratios, and writes everything to
bench/results/<timestamp>.json. Exit status 1 when a phase fails (a non-2xx response, a
socket error, no request completed) or the service does not start; the targets are
reported, never asserted (CI runs --smoke only to prove the harness works).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import datetime as dt
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
HOST = "127.0.0.1"  # the harness only ever targets the loopback interface
PASSWORD = "correct horse battery staple"
MIB = 1024 * 1024

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")

# Token phases: the Node driver (signs every client assertion and DPoP proof in advance) and
# the reference provider, oidc-provider (bench/reference/); both clients of
# bench/reference/clients.json use private_key_jwt with the interop tests' test key.
REFERENCE = BENCH / "reference"
TOKEN_CLIENTS = REFERENCE / "clients.json"
TOKEN_KEY = ROOT / "tests" / "interop" / "private_key_jwt.test-key.json"
TOKEN_PHASES = ("client_credentials", "code_exchange", "refresh", "introspection", "userinfo_dpop")
# The token endpoint's phases: the 5 x throughput and 1/5 p99 targets apply to these.
TOKEN_ENDPOINT_PHASES = ("client_credentials", "code_exchange", "refresh")
# Phases whose database rows per operation are counted (target: at most one each).
TOKEN_WRITE_PHASES = ("code_exchange", "refresh")

# Variables the service reads: removed from the inherited environment so that nothing
# from the caller's shell leaks into a measured configuration.
SERVICE_VARS = {
    "APP_ENV", "BIND_ADDR", "METRICS_ADDR", "METRICS_TOKEN", "DATA_DIR", "DATABASE_URL", "REDIS_URL", "STORE_KEY_PREFIX",
    "SINGLE_INSTANCE", "ALLOW_SQLITE_IN_PRODUCTION", "TOTP_ENCRYPTION_KEY",
    "TOTP_ENCRYPTION_KEYS_OLD", "FIDO_RP_ID", "FIDO_RP_NAME", "ORIGIN_URL",
    "FRONTEND_ORIGINS", "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD",
    "SMTP_FROM", "SMTP_TLS", "OUTBOX_POLL_INTERVAL_MS", "OUTBOX_RETRY_BASE_MS",
    "COOKIE_SECURE", "SESSION_COOKIE_NAME", "SESSION_IDLE_TIMEOUT_SECONDS",
    "SESSION_ABSOLUTE_TIMEOUT_SECONDS", "STEP_UP_MAX_AGE_SECONDS", "RATE_LIMIT_AUTH",
    "TRUSTED_PROXIES", "LOCKOUT_THRESHOLD", "LOCKOUT_BASE_SECONDS", "LOCKOUT_MAX_SECONDS",
    "ARGON2_MEMORY_KIB", "ARGON2_ITERATIONS", "ARGON2_PARALLELISM",
    "PASSWORD_HASHING_CONCURRENCY", "PASSWORD_MIN_LENGTH", "PASSWORD_PEPPER",
    "PASSWORD_PEPPERS_OLD", "BANNED_PASSWORDS_FILE", "HSTS", "REQUEST_TIMEOUT_SECONDS",
    "RUST_LOG",
}

PROFILES = {
    "full": dict(
        phase_s=15, flood_s=25, me_c=64, health_c=64, login_c=8, register_c=8,
        flood_c=500, sessions=64, users=8, argon2=(65536, 3, 1), hash_rounds=20,
        cold_starts=3, stats_wait_s=11.0, scaleout=True, info_logs=True, probe_n=200,
        abandon_clients=32, abandon_s=10, retries=2, noisy_cores=0.3, scrape_interval_s=15.0,
        keepalive_s=20.0,
        # Token phases: connections, and how many requests are prepared (signed) for each;
        # a phase ends when its supply or its duration runs out. Codes live 60 s, so fewer.
        token_c=16, token_supply=30000, code_supply=3000,
    ),
    "smoke": dict(
        phase_s=1, flood_s=2, me_c=64, health_c=64, login_c=8, register_c=8,
        flood_c=500, sessions=8, users=2, argon2=(1024, 1, 1), hash_rounds=20,
        cold_starts=1, stats_wait_s=1.0, scaleout=True, info_logs=False, probe_n=20,
        abandon_clients=8, abandon_s=1, retries=0, noisy_cores=0.3, scrape_interval_s=15.0,
        keepalive_s=1.0,
        token_c=16, token_supply=300, code_supply=100,
    ),
}


# Load drivers still running (killed if the run is interrupted).
RUNNING: set[subprocess.Popen] = set()


def interrupt(signum, frame) -> None:
    """SIGTERM (and SIGINT, even when started in the background) stops the run cleanly:
    the services are stopped and the benchmark database and Redis keys removed."""
    raise KeyboardInterrupt


class BenchError(RuntimeError):
    """A step that must work did not: the run fails (exit 1)."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- Machine and process facts ------------------------------------------------------------

def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def machine() -> dict:
    cpuinfo = read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = read("/proc/meminfo")
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)

    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "cpu_model": model.group(1).strip() if model else "unknown",
        "cpu_mhz": float(mhz.group(1)) if mhz else None,
        "nproc": os.cpu_count(),
        "available_cores": len(os.sched_getaffinity(0)),
        "memory_total_gib": round(int(total.group(1)) / 1024 / 1024, 1) if total else None,
        "free_h": out(["free", "-h"]),
        "kernel": os.uname().release,
        "rustc": out(["rustc", "--version"]),
        "wrk": (out(["wrk", "-v"]).splitlines() or [""])[0] if shutil.which("wrk") else None,
        "postgres": out(["psql", PG_ADMIN_URL + "/postgres", "-Atc", "SHOW server_version"]),
        "redis": (re.findall(r"redis_version:(\S+)", out(["redis-cli", "-u", REDIS_URL, "INFO", "server"])) or [""])[0],
        "git_commit": out(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        "git_dirty": bool(out(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml"])),
        "loadavg_at_start": read("/proc/loadavg").split()[:3],
    }


def wait_for_quiet(limit_s: float, threshold_cores: float = 0.25) -> dict:
    """Other engineers share this machine: wait (bounded) until it is idle, so that the
    service, its storage and the load driver get the cores to themselves."""
    hz = os.sysconf("SC_CLK_TCK")
    started = time.monotonic()
    while True:
        b0, _, _ = cpu_ticks_total()
        time.sleep(3)
        b1, _, _ = cpu_ticks_total()
        busy = (b1 - b0) / hz / 3
        waited = time.monotonic() - started
        if busy < threshold_cores or waited >= limit_s:
            quiet = busy < threshold_cores
            log(f"machine busy {busy:.2f} cores after waiting {waited:.0f} s"
                + ("" if quiet else " (not quiet: measuring anyway)"))
            return {"waited_s": round(waited, 1), "busy_cores": round(busy, 2), "quiet": quiet}


def cpu_ticks_total() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies of the whole machine; busy includes steal (time the
    hypervisor gave this VM's CPUs to someone else)."""
    fields = [int(x) for x in read("/proc/stat").splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total, fields[7]


def postgres_aux_pids() -> list[int]:
    """The PostgreSQL cluster's own processes (shared with other databases, but idle
    unless someone writes): WAL writer, checkpointer, background writer, autovacuum."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cmd = read(f"/proc/{entry}/cmdline").replace("\0", " ")
            if cmd.startswith("postgres: ") and any(k in cmd for k in (
                    "walwriter", "checkpointer", "background writer", "autovacuum")):
                pids.append(int(entry))
    return pids


def proc_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in jiffies; 0 once it is gone."""
    text = read(f"/proc/{pid}/stat")
    if not text:
        return 0
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def example_binary(binary: Path, name: str) -> Path:
    """`examples/<name>` built with the same profile as `binary` (target/<profile>/); built
    here when missing."""
    exe = binary.parent / "examples" / name
    if not exe.exists():
        release = binary.parent.name == "release"
        log(f"building examples/{name}.rs ({'release' if release else 'dev'})")
        cmd = ["cargo", "build", "--example", name] + (["--release"] if release else [])
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        if res.returncode != 0 or not exe.exists():
            raise BenchError(f"cannot build examples/{name}.rs: {res.stderr.strip()[-800:]}")
    return exe


def vm_kib(pid: int, field: str) -> int:
    m = re.search(rf"^{field}:\s*(\d+) kB", read(f"/proc/{pid}/status"), re.M)
    return int(m.group(1)) if m else 0


def reset_peak_rss(pid: int) -> bool:
    """Resets VmHWM (the kernel's exact peak RSS) so it covers one phase only."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Samples VmRSS of the service process(es) every 50 ms during a phase; also reads the
    kernel's VmHWM (exact peak) after resetting it at the start. The timeline separates
    the load itself from its end, when the driver closes every connection at once."""

    def __init__(self, pids: list[int], interval: float = 0.05):
        self.pids = pids
        self.interval = interval
        self.peak = {pid: 0 for pid in pids}
        self.peak_sum = 0
        self.samples = 0
        self.timeline: list[tuple[float, int]] = []  # (seconds since start, total KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.hwm_reset = all(reset_peak_rss(pid) for pid in pids)
        self.t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in self.pids:
                rss = vm_kib(pid, "VmRSS")
                self.peak[pid] = max(self.peak[pid], rss)
                total += rss
            self.peak_sum = max(self.peak_sum, total)
            self.timeline.append((time.monotonic() - self.t0, total))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def result(self, load_s: float | None = None) -> dict:
        hwm = {pid: vm_kib(pid, "VmHWM") for pid in self.pids} if self.hwm_reset else {}
        peak_mib = max(max(self.peak.values()), max(hwm.values(), default=0)) / 1024
        out = {
            "peak_rss_mib": round(peak_mib, 1),
            "peak_rss_sum_mib": round(max(self.peak_sum, sum(hwm.values())) / 1024, 1),
            "sampled_peak_rss_mib": {str(p): round(v / 1024, 1) for p, v in self.peak.items()},
            "vmhwm_mib": {str(p): round(v / 1024, 1) for p, v in hwm.items()},
            "rss_samples": self.samples,
            # every 0.5 s: [seconds, MiB] (all instances together)
            "rss_timeline_mib": [[round(t, 2), round(k / 1024, 1)]
                                 for t, k in self.timeline[::max(1, int(0.5 / self.interval))]],
        }
        if load_s is not None:
            # Peak while the load ran, up to 0.5 s before the driver stopped (and closed
            # its connections): the teardown is reported separately.
            during = [k for t, k in self.timeline if t <= load_s - 0.5]
            out["peak_rss_during_load_mib"] = round(max(during, default=0) / 1024, 1)
        return out


# --- HTTP helpers ---------------------------------------------------------------------------

def http_request(port: int, method: str, path: str, body: dict | None = None,
                 headers: dict | None = None, timeout: float = 30.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = dict(headers or {})
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, resp.headers, payload
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --- The service ------------------------------------------------------------------------------

class Server:
    # Which provider the token phases' driver talks to (its login and consent steps differ).
    provider = "ours"

    def __init__(self, binary: Path, env: dict, workdir: Path, name: str,
                 cpus: str | None = None):
        self.binary = binary
        # `taskset -c <cpus>` (it execs the service, so the pid stays the service's).
        self.cpus = cpus
        self.env = dict(env)
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.env["BIND_ADDR"] = f"{HOST}:{self.port}"
        # /metrics is served on its own listener only (METRICS_ADDR), never on BIND_ADDR.
        self.metrics_port = free_port()
        self.env["METRICS_ADDR"] = f"{HOST}:{self.metrics_port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> float:
        """Starts `serve`; returns seconds from spawn to the first /readyz 200."""
        logf = open(self.log_path, "ab")
        started = time.monotonic()
        pin = ["taskset", "-c", self.cpus] if self.cpus and shutil.which("taskset") else []
        self.proc = subprocess.Popen(pin + self.command(), env=self.env,
                                     cwd=self.workdir, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        logf.close()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}; "
                                 f"log: {self.log_tail()}")
            try:
                status, _, _ = http_request(self.port, "GET", "/readyz", timeout=2)
                if status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.005)
        raise BenchError(f"{self.name} not ready after {timeout}s; log: {self.log_tail()}")

    def command(self) -> list[str]:
        return [str(self.binary), "serve"]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(read(str(self.log_path)).splitlines()[-lines:])


class ReferenceServer(Server):
    """The reference OpenID Provider (bench/reference/server.mjs, oidc-provider) on its own
    port, in memory: started, measured and stopped like an instance of ours."""
    provider = "reference"

    def __init__(self, workdir: Path, name: str = "reference"):
        super().__init__(Path(shutil.which("node") or "node"), dict(os.environ), workdir, name)

    def command(self) -> list[str]:
        return [str(self.binary), str(REFERENCE / "server.mjs"), "--port", str(self.port),
                "--clients", str(TOKEN_CLIENTS)]


# --- Load drivers -----------------------------------------------------------------------------

def run_wrk(script: str, port: int, connections: int, duration: float, threads: int,
            env: dict, timeout_s: int, shard: str = "0") -> subprocess.Popen:
    wenv = dict(os.environ, **env, BENCH_LUA_DIR=str(BENCH), BENCH_SHARD=shard)
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}",
           f"-d{max(1, round(duration))}s", f"--timeout={timeout_s}s",
           "-s", str(BENCH / script), f"http://{HOST}:{port}"]
    out = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=wenv, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    proc.bench_out = out  # type: ignore[attr-defined]
    RUNNING.add(proc)
    return proc


def wait_wrk(proc: subprocess.Popen, limit: float) -> tuple[dict, float]:
    """Waits for a wrk process; returns its parsed summary and the CPU seconds it used."""
    deadline = time.monotonic() + limit
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            RUNNING.discard(proc)
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise BenchError("wrk did not finish in time")
        time.sleep(0.05)
    out = proc.bench_out  # type: ignore[attr-defined]
    out.seek(0)
    text = out.read().decode(errors="replace")
    out.close()
    m = re.search(r"^BENCH_JSON (\{.*\})$", text, re.M)
    if proc.returncode != 0 or not m:
        raise BenchError(f"{proc.args[0]} failed (exit {proc.returncode}): {text[-2000:]}")
    return json.loads(m.group(1)), usage.ru_utime + usage.ru_stime


def run_node_load(cfg_path: str) -> subprocess.Popen:
    """The token phases' driver (bench/reference/driver.mjs load): same output as wrk."""
    out = tempfile.TemporaryFile()
    proc = subprocess.Popen(["node", str(REFERENCE / "driver.mjs"), "load", cfg_path], stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REFERENCE)
    proc.bench_out = out  # type: ignore[attr-defined]
    RUNNING.add(proc)
    return proc


def ensure_node_packages() -> None:
    """`npm ci` in bench/reference when its packages are missing (jose for the driver,
    oidc-provider for --reference): ~5 s from npm's cache."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise BenchError("the token phases need node and npm on the PATH")
    wanted = [REFERENCE / "node_modules" / m / "package.json" for m in ("jose", "oidc-provider")]
    if all(w.exists() for w in wanted):
        return
    log("npm ci in bench/reference")
    res = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=REFERENCE,
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise BenchError(f"npm ci in bench/reference failed: {res.stderr.strip()[-1500:]}")


class PyDriver(threading.Thread):
    """Fallback load driver (threads + http.client) for --smoke when wrk is not installed.
    Same request mix as the Lua scripts; far slower, so never used for the full run."""

    def __init__(self, script: str, port: int, connections: int, duration: float,
                 env: dict, shard: str):
        super().__init__(daemon=True)
        self.args = (script, port, connections, duration, env, shard)
        self.summary: dict = {}
        self.cpu = 0.0

    def run(self) -> None:
        script, port, connections, duration, env, shard = self.args
        lat: list[float] = []
        errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        lock = threading.Lock()
        t_end = time.monotonic() + duration
        tokens = Path(env["BENCH_TOKENS_FILE"]).read_text().split() if "BENCH_TOKENS_FILE" in env else []
        users = Path(env["BENCH_USERS_FILE"]).read_text().split() if "BENCH_USERS_FILE" in env else []
        cpu0 = time.process_time()

        def request_for(worker: int, n: int):
            if script == "healthz.lua":
                return "GET", "/healthz", None, {}
            if script == "me.lua":
                return "GET", env.get("BENCH_SESSION_PATH", "/auth/me"), None, {"Cookie": f"session={tokens[(worker + n) % len(tokens)]}"}
            if script == "login.lua":
                return "POST", "/auth/login", {"email": users[(worker + n) % len(users)], "password": env["BENCH_PASSWORD"]}, {}
            email = f"r{env['BENCH_RUN_ID']}-{shard}-p{worker}-{n}@bench.example"
            return "POST", "/auth/register", {"email": email, "password": env["BENCH_PASSWORD"]}, {}

        def worker(w: int) -> None:
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
            n = 0
            while time.monotonic() < t_end:
                method, path, body, headers = request_for(w, n)
                n += 1
                data = json.dumps(body).encode() if body is not None else None
                if data is not None:
                    headers = dict(headers, **{"Content-Type": "application/json"})
                t0 = time.monotonic()
                try:
                    conn.request(method, path, body=data, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                except OSError:
                    with lock:
                        errors["read"] += 1
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=60)
                    continue
                with lock:
                    lat.append((time.monotonic() - t0) * 1e6)
                    if resp.status > 399:
                        errors["status"] += 1
            conn.close()

        started = time.monotonic()
        workers = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(connections)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        elapsed = time.monotonic() - started
        lat.sort()

        def pct(p: float) -> int:
            return int(lat[min(len(lat) - 1, int(len(lat) * p / 100))]) if lat else 0

        self.summary = {
            "requests": len(lat), "duration_us": int(elapsed * 1e6), "bytes": 0, "errors": errors,
            "latency_us": {"min": int(lat[0]) if lat else 0, "mean": statistics.fmean(lat) if lat else 0,
                           "stdev": statistics.pstdev(lat) if lat else 0, "max": int(lat[-1]) if lat else 0,
                           "p50": pct(50), "p90": pct(90), "p99": pct(99), "p999": pct(99.9)},
        }
        self.cpu = time.process_time() - cpu0


# --- Storage helpers --------------------------------------------------------------------------

def psql(sql: str, db: str = "postgres") -> str:
    res = subprocess.run(["psql", f"{PG_ADMIN_URL}/{db}", "-v", "ON_ERROR_STOP=1", "-AtXqc", sql],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise BenchError(f"psql failed: {res.stderr.strip()}")
    return res.stdout.strip()


def redis_cli(*args: str) -> str:
    res = subprocess.run(["redis-cli", "-u", REDIS_URL, *args], capture_output=True,
                         text=True, timeout=60)
    if res.returncode != 0:
        raise BenchError(f"redis-cli failed: {res.stderr.strip()}")
    return res.stdout.strip()


def pg_db_stats(db: str) -> dict:
    row = psql("SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
               "tup_returned, tup_fetched FROM pg_stat_database WHERE datname = "
               f"'{db}'").split("|")
    keys = ["xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted",
            "tup_returned", "tup_fetched"]
    stats = dict(zip(keys, map(int, row)))
    tables = psql("SELECT string_agg(relname || ':' || (n_tup_ins + n_tup_upd + n_tup_del), ',') "
                  "FROM pg_stat_user_tables", db=db)
    stats["tables"] = {k: int(v) for k, v in (t.split(":") for t in tables.split(",") if t)}
    return stats


def pg_backend_pids(db: str) -> list[int]:
    out = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{db}'")
    return [int(x) for x in out.split()]


def redis_pid() -> int | None:
    try:
        m = re.search(r"process_id:(\d+)", redis_cli("INFO", "server"))
        return int(m.group(1)) if m else None
    except (BenchError, OSError, subprocess.SubprocessError):
        return None


def sqlite_state(path: Path) -> dict:
    """Row counts of every table and the sessions' last_seen_at sum, read over a separate
    connection (WAL: readers never block the service)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=10)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        seen = dict(conn.execute("SELECT id, last_seen_at FROM sessions"))
        return {"rows": counts, "sessions_last_seen": seen}
    finally:
        conn.close()


# --- One deployment ----------------------------------------------------------------------------

class Deployment:
    def __init__(self, name: str, binary: Path, profile: dict, run_id: str, driver: str,
                 workroot: Path, baseline: Path | None = None):
        self.name = name
        self.binary = binary
        self.baseline = baseline
        self.p = profile
        self.run_id = run_id
        self.driver = driver
        self.workdir = workroot / name
        self.workdir.mkdir(parents=True)
        (self.workdir / "data").mkdir()
        self.servers: list[Server] = []
        self.result: dict = {"phases": {}, "failures": []}
        self.db_name = f"lcbench_{run_id}" if name == "postgres" else None
        self.prefix = f"lcbench:{run_id}:"
        m, t, par = profile["argon2"]
        self.env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
        self.env.update({
            "APP_ENV": "development",
            "DATA_DIR": str(self.workdir / "data"),
            "TOTP_ENCRYPTION_KEY": secrets.token_hex(24),
            "COOKIE_SECURE": "false",
            "RATE_LIMIT_AUTH": "100000000/600",
            "LOCKOUT_THRESHOLD": "1000000",
            "ARGON2_MEMORY_KIB": str(m), "ARGON2_ITERATIONS": str(t),
            "ARGON2_PARALLELISM": str(par),
            "RUST_LOG": "warn",
            # The token phases' clients (private_key_jwt, the interop tests' test key).
            "OIDC_CLIENTS_FILE": str(TOKEN_CLIENTS),
        })
        self.env.update(profile.get("service_env", {}))
        if name == "postgres":
            self.env["DATABASE_URL"] = f"{PG_ADMIN_URL}/{self.db_name}"
            self.env["REDIS_URL"] = REDIS_URL
            self.env["STORE_KEY_PREFIX"] = self.prefix
        else:
            self.sqlite_path = self.workdir / "data" / "auth.db"
            self.env["DATABASE_URL"] = f"sqlite://{self.sqlite_path}"
        self.users = [f"u{i}-{run_id}@bench.example" for i in range(profile["users"])]
        self.users_file = self.workdir / "users.txt"
        self.tokens_file = self.workdir / "tokens.txt"
        self.lua_env = {"BENCH_USERS_FILE": str(self.users_file),
                        "BENCH_TOKENS_FILE": str(self.tokens_file),
                        "BENCH_PASSWORD": PASSWORD, "BENCH_RUN_ID": run_id,
                        "BENCH_COOKIE": "session"}

    # -- lifecycle --

    def start_scraper(self, interval: float) -> None:
        """GET /metrics on every running instance's metrics listener every `interval`
        seconds, as Prometheus would in production (the recorder keeps histogram samples
        until a scrape or an upkeep drains them). 0 disables it."""
        self.scrapes = 0
        self._scraper_stop = threading.Event()
        if interval <= 0:
            return

        def loop() -> None:
            while not self._scraper_stop.wait(interval):
                for server in list(self.servers):
                    if server.proc and server.proc.poll() is None and server.provider == "ours":
                        try:
                            http_request(server.metrics_port, "GET", "/metrics", timeout=5)
                            self.scrapes += 1
                        except OSError:
                            pass

        threading.Thread(target=loop, daemon=True).start()

    def start_keepalive(self, tokens: list[str], every_s: float) -> None:
        """Keeps every benchmark session active for the whole deployment run (one
        GET /auth/me per session every `every_s` seconds, on whichever instance is up), so
        that the durable last_seen_at writes over the run give writes per active
        session-hour (`session_hour_writes`)."""
        self._keepalive_stop = threading.Event()
        self.keepalive = {"started": time.time(), "tokens": len(tokens), "every_s": every_s,
                          "requests": 0, "failed": 0,
                          "updates_before": self.session_updates()}

        def loop() -> None:
            while not self._keepalive_stop.wait(every_s):
                # Instances of ours only: the reference provider has no sessions.
                live = [s for s in self.servers if s.proc and s.proc.poll() is None and s.provider == "ours"]
                if not live:
                    continue
                for token in tokens:
                    try:
                        status, _, _ = http_request(live[-1].port, "GET", "/auth/me",
                                                    headers={"Cookie": f"session={token}"}, timeout=5)
                        self.keepalive["requests"] += 1
                        self.keepalive["failed"] += status != 200
                    except OSError:
                        self.keepalive["failed"] += 1

        threading.Thread(target=loop, daemon=True).start()

    def session_updates(self) -> int | None:
        """Rows updated in the sessions table so far (PostgreSQL statistics; None on
        SQLite, whose row counts do not show updates)."""
        if not self.db_name:
            return None
        out = psql("SELECT coalesce(sum(n_tup_upd), 0) FROM pg_stat_user_tables "
                   "WHERE relname = 'sessions'", db=self.db_name)
        return int(out or 0)

    def stop_keepalive(self) -> None:
        if not hasattr(self, "_keepalive_stop") or self._keepalive_stop.is_set():
            return
        self._keepalive_stop.set()
        k = self.keepalive
        time.sleep(self.p["stats_wait_s"])
        after = self.session_updates()
        hours = (time.time() - k["started"]) / 3600
        k["elapsed_s"] = round(hours * 3600, 1)
        if after is not None and k["updates_before"] is not None:
            k["session_updates"] = after - k["updates_before"]
            k["writes_per_session_hour"] = round(k["session_updates"] / (k["tokens"] * hours), 1)
        self.result["session_hour_writes"] = k
        log(f"{self.name}: sessions kept active {k['elapsed_s']} s: {k}")

    def new_server(self, tag: str, cpus: str | None = None, binary: Path | None = None,
                   **env) -> Server:
        server = Server(binary or self.binary, dict(self.env, **env), self.workdir,
                        f"{self.name}-{tag}", cpus)
        self.servers.append(server)
        return server

    def cleanup(self) -> None:
        if hasattr(self, "_keepalive_stop"):
            self._keepalive_stop.set()
        if hasattr(self, "_scraper_stop"):
            self._scraper_stop.set()
            self.result["metrics_scrapes"] = self.scrapes
        for proc in list(RUNNING):
            proc.kill()
            RUNNING.discard(proc)
        for server in self.servers:
            server.stop()
        if self.db_name:
            try:
                psql(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                log(f"warning: could not drop {self.db_name}: {e}")
            try:
                keys = redis_cli("--scan", "--pattern", f"{self.prefix}*").split()
                for i in range(0, len(keys), 500):
                    redis_cli("DEL", *keys[i:i + 500])
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                log(f"warning: could not delete Redis keys {self.prefix}*: {e}")

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        res = subprocess.run([str(self.binary), *args], env=self.env, cwd=self.workdir,
                             input=stdin, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise BenchError(f"`{' '.join(args)}` failed: {res.stderr.strip()[-1500:]}")
        return res.stdout

    # -- measurements --

    def argon2_ceiling(self) -> dict:
        """(d): cores / single-hash seconds, by the binary's own `hash-benchmark` with the
        same ARGON2_* environment. Also measured: all cores hashing at once (one process
        per core), which shows what memory bandwidth and the shared CPU leave of it."""
        rounds = str(self.p["hash_rounds"])
        single = json.loads(self.cli("hash-benchmark", "--rounds", rounds).strip().splitlines()[-1])
        cores = int(single["cores"])
        procs = [subprocess.Popen([str(self.binary), "hash-benchmark", "--rounds", rounds],
                                  env=self.env, cwd=self.workdir, stdout=subprocess.PIPE,
                                  text=True) for _ in range(cores)]
        parallel = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
        single["parallel_ceiling_per_second"] = round(sum(1 / r["seconds_per_hash"] for r in parallel), 2)
        single["parallel_seconds_per_hash"] = [round(r["seconds_per_hash"], 4) for r in parallel]
        single["hashes_in_flight"] = int(self.env.get("PASSWORD_HASHING_CONCURRENCY", cores))
        return single

    def create_users(self) -> None:
        def one(email: str) -> None:
            self.cli("create-user", "--email", email, "--role", "user", stdin=PASSWORD + "\n")
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(one, self.users))
        self.users_file.write_text("\n".join(self.users) + "\n")

    def login_sessions(self, port: int, count: int) -> list[str]:
        def one(i: int) -> str:
            status, headers, body = http_request(
                port, "POST", "/auth/login", {"email": self.users[i % len(self.users)], "password": PASSWORD})
            if status != 200:
                raise BenchError(f"login for a session failed: {status} {body[:200]!r}")
            for cookie in headers.get_all("Set-Cookie") or []:
                if cookie.startswith("session="):
                    return cookie.split(";", 1)[0].split("=", 1)[1]
            raise BenchError("login answered 200 without a session cookie")
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            tokens = list(pool.map(one, range(count)))
        status, _, body = http_request(port, "GET", "/auth/me", headers={"Cookie": f"session={tokens[0]}"})
        if status != 200:
            raise BenchError(f"GET /auth/me with a fresh session: {status} {body[:200]!r}")
        self.tokens_file.write_text("\n".join(tokens) + "\n")
        return tokens

    def phase(self, name: str, script: str, connections: int, duration: float,
              servers: list[Server] | None = None, timeout_s: int = 10,
              env: dict | None = None, prepare=None, retries: int | None = None) -> dict:
        """Runs one load phase; when other work on the machine took more than
        `noisy_cores` of CPU meanwhile, runs it again (up to `retries` times) and keeps the
        quietest attempt. The attempts' figures stay in the JSON. `prepare` (single-use
        inputs: codes, signed assertions) runs before each attempt, outside the measure."""
        servers = servers or [self.main]
        attempts = []
        retries = self.p["retries"] if retries is None else retries
        for attempt in range(1 + retries):
            if prepare:
                prepare()
            self.settle(servers)
            result = self._phase_once(name, script, connections, duration, servers, timeout_s, env)
            attempts.append(result)
            other = result["cpu_cores_used"]["other"] + result["cpu_cores_used"]["steal"]
            if other <= self.p["noisy_cores"] or "failed" in result:
                break
            if attempt < retries:
                log(f"  other work took {other:.2f} cores during {name}: repeating it")
        result = min(attempts, key=lambda r: r["cpu_cores_used"]["other"] + r["cpu_cores_used"]["steal"])
        if len(attempts) > 1:
            result["noisy_attempts"] = [{k: a[k] for k in ("rps", "p50_ms", "p99_ms", "cpu_cores_used")}
                                        for a in attempts if a is not result]
        if "failed" in result:
            self.result["failures"].append(f"{self.name}/{name}: {result['failed']}")
            log(f"FAILED {self.name}/{name}: {result['failed']}")
        self.result["phases"][name] = result
        return result

    def token_phase(self, kind: str, server: Server, prefix: str = "") -> dict:
        """One token phase (TOKEN_PHASES) against `server` (ours or the reference): the
        driver first prepares its single-use requests (not measured), then sends them over
        `token_c` connections. Code exchange and refresh on ours also count the database
        rows written per operation (prepared outside the count; no retry then, as a retry
        needs a fresh supply inside the count)."""
        p = self.p
        name = f"{prefix}{kind}"
        cfg_path = self.workdir / f"{name}.driver.json"

        def prepare() -> None:
            cfg = {"base": f"http://{HOST}:{server.port}", "provider": server.provider, "phase": kind,
                   "connections": p["token_c"], "duration_s": p["phase_s"],
                   "count": p["code_supply"] if kind == "code_exchange" else p["token_supply"],
                   "email": self.users[0], "password": PASSWORD, "key_file": str(TOKEN_KEY),
                   "prepared": str(self.workdir / f"{name}.prepared.json")}
            cfg_path.write_text(json.dumps(cfg))
            t0 = time.monotonic()
            res = subprocess.run(["node", str(REFERENCE / "driver.mjs"), "prepare", str(cfg_path)],
                                 cwd=REFERENCE, capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                raise BenchError(f"{name}: preparing the requests failed: {res.stderr.strip()[-1500:]}")
            log(f"{self.name}: {name}: prepared {res.stdout.strip()} in {time.monotonic() - t0:.1f} s")

        script = f"tokens:{cfg_path}"
        if server.provider == "ours" and kind in TOKEN_WRITE_PHASES:
            prepare()
            writes = self._writes_during(
                lambda: self.phase(name, script, p["token_c"], p["phase_s"], servers=[server], retries=0),
                p["stats_wait_s"])
            result = self.result["phases"][name]
            writes["per_operation"] = round(writes["rows_written"] / max(1, result["requests"]), 3)
            # Which tables: what a change to the write path has to remove.
            writes["per_operation_by_table"] = {t: round(v / max(1, result["requests"]), 3)
                                                for t, v in writes["tables_written"].items()}
            self.result.setdefault("token_writes", {})[name] = writes
        else:
            result = self.phase(name, script, p["token_c"], p["phase_s"], servers=[server], prepare=prepare)
        result["script"] = f"reference/driver.mjs {kind}"
        result["provider"] = server.provider
        return result

    def token_phases(self, server: Server) -> None:
        """The token phases against our instance, then (--reference) the same against the
        reference provider, started on its own port for the purpose."""
        for kind in TOKEN_PHASES:
            self.token_phase(kind, server)
        self.verify_phase(server)
        if not self.p.get("reference"):
            return
        ref = ReferenceServer(self.workdir)
        self.servers.append(ref)
        self.result["reference_cold_start_s"] = round(ref.start(), 3)
        self.result["reference_idle_rss_mib"] = round(vm_kib(ref.pid, "VmRSS") / 1024, 1)
        for kind in TOKEN_PHASES:
            self.token_phase(kind, ref, prefix="ref_")
        ref.stop()

    def verify_phase(self, server: Server) -> None:
        """Access-token verification in the resource-server helper against p256's raw ES256
        verify, one thread each, alternating (examples/verify_bench.rs), on a token this
        instance issued. Target: the helper at >= 0.8 x the raw rate."""
        exe = example_binary(self.binary, "verify_bench")
        cfg_path = self.workdir / "verify.driver.json"
        cfg_path.write_text(json.dumps({"base": f"http://{HOST}:{server.port}", "provider": "ours",
                                        "phase": "mint", "key_file": str(TOKEN_KEY)}))
        res = subprocess.run(["node", str(REFERENCE / "driver.mjs"), "mint", str(cfg_path)],
                             cwd=REFERENCE, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise BenchError(f"jwt_verify: minting a token failed: {res.stderr.strip()[-800:]}")
        token = json.loads(res.stdout)["access_token"]
        payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        env = {**os.environ, "ISSUER_URL": payload["iss"], "AUDIENCE": payload["aud"],
               "BASE_URL": f"http://{HOST}:{server.port}", "TOKEN": token}
        seconds = max(1.0, self.p["phase_s"])
        res = subprocess.run([str(exe), str(seconds)], env=env, capture_output=True, text=True,
                             timeout=int(seconds) + 120)
        if res.returncode != 0:
            raise BenchError(f"jwt_verify: {exe.name} failed: {res.stderr.strip()[-800:]}")
        result = json.loads(res.stdout.strip().splitlines()[-1])
        log(f"{self.name}: jwt_verify: helper {result['helper_verifies_per_s']}/s, raw "
            f"{result['raw_verifies_per_s']}/s, ratio {result['ratio']}")
        self.result["jwt_verify"] = result

    def settle(self, servers: list[Server], limit_s: float = 20.0) -> float:
        """Waits until the service is idle (under 0.05 core over 0.5 s): work a phase left
        behind (hashes of requests whose clients left) must not land in the next one."""
        hz = os.sysconf("SC_CLK_TCK")
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            t0 = sum(proc_ticks(s.pid) for s in servers)
            time.sleep(0.5)
            if (sum(proc_ticks(s.pid) for s in servers) - t0) / hz / 0.5 < 0.05:
                break
        return time.monotonic() - started

    def _phase_once(self, name: str, script: str, connections: int, duration: float,
                    servers: list[Server], timeout_s: int, env: dict | None) -> dict:
        """One load phase against one or more instances (connections split evenly),
        sampling RSS and the CPU used by the service, the driver, PostgreSQL, Redis and
        the rest of the machine."""
        log(f"{self.name}: {name}: {script} c={connections} {duration}s on {len(servers)} instance(s)")
        # PostgreSQL: the backends serving this run's database (new ones found at the end
        # count from zero; ones that exited are lost) and the cluster's own processes
        # (WAL writer, checkpointer, ...). Redis: the server process.
        pg_aux = postgres_aux_pids() if self.db_name else []
        pg0 = {pid: proc_ticks(pid) for pid in pg_backend_pids(self.db_name) + pg_aux} if self.db_name else {}
        rpid = redis_pid() if self.name == "postgres" else None
        redis0 = proc_ticks(rpid) if rpid else 0
        srv0 = sum(proc_ticks(s.pid) for s in servers)
        busy0, total0, steal0 = cpu_ticks_total()
        load0 = read("/proc/loadavg").split()[:3]
        per = [connections // len(servers) + (1 if i < connections % len(servers) else 0)
               for i in range(len(servers))]
        threads = max(1, 2 // len(servers))
        lua_env = dict(self.lua_env, **(env or {}))
        wall0 = time.monotonic()
        with RssSampler([s.pid for s in servers]) as rss:
            if script.startswith("tokens:"):
                # The token phases' Node driver (always one instance; wrk cannot sign).
                outs = [wait_wrk(run_node_load(script.removeprefix("tokens:")), duration + timeout_s + 60)]
            elif self.driver == "wrk":
                procs = [run_wrk(script, s.port, c, duration, threads, lua_env, timeout_s, shard=str(i))
                         for i, (s, c) in enumerate(zip(servers, per))]
                outs = [wait_wrk(p, duration + timeout_s + 60) for p in procs]
            else:
                drivers = [PyDriver(script, s.port, c, duration, lua_env, str(i))
                           for i, (s, c) in enumerate(zip(servers, per))]
                for d in drivers:
                    d.start()
                for d in drivers:
                    d.join(duration + timeout_s + 60)
                outs = [(d.summary, d.cpu) for d in drivers]
        wall = time.monotonic() - wall0
        busy1, total1, steal1 = cpu_ticks_total()
        srv1 = sum(proc_ticks(s.pid) for s in servers)
        hz = os.sysconf("SC_CLK_TCK")
        aux_cpu: dict[str, float] = {}
        if self.db_name:
            pg1 = {pid: proc_ticks(pid) for pid in pg_backend_pids(self.db_name) + pg_aux}
            aux_cpu["postgres"] = sum(max(0, t - pg0.get(pid, 0)) for pid, t in pg1.items() if t) / hz
        if rpid:
            aux_cpu["redis"] = max(0, proc_ticks(rpid) - redis0) / hz
        ncpu = len(os.sched_getaffinity(0))
        driver_cpu = sum(cpu for _, cpu in outs)
        server_cpu = (srv1 - srv0) / hz
        machine_busy = (busy1 - busy0) / hz
        steal = (steal1 - steal0) / hz
        other = max(0.0, machine_busy - steal - server_cpu - driver_cpu - sum(aux_cpu.values()))

        summaries = [s for s, _ in outs]
        reqs = sum(s["requests"] for s in summaries)
        secs = max(s["duration_us"] for s in summaries) / 1e6
        errs = {k: sum(s["errors"][k] for s in summaries) for k in summaries[0]["errors"]}
        lat = [s["latency_us"] for s in summaries]
        weight = [max(1, s["requests"]) for s in summaries]
        result = {
            "script": script, "connections": connections, "instances": len(servers),
            "duration_s": round(secs, 2), "requests": reqs,
            "rps": round(reqs / secs, 1) if secs else 0.0,
            # Several instances: p50 is request-weighted, p99/max the worst instance's.
            "p50_ms": round(sum(l["p50"] * w for l, w in zip(lat, weight)) / sum(weight) / 1000, 3),
            "p90_ms": round(max(l["p90"] for l in lat) / 1000, 3),
            "p99_ms": round(max(l["p99"] for l in lat) / 1000, 3),
            "p999_ms": round(max(l["p999"] for l in lat) / 1000, 3),
            "max_ms": round(max(l["max"] for l in lat) / 1000, 3),
            "mean_ms": round(sum(l["mean"] * w for l, w in zip(lat, weight)) / sum(weight) / 1000, 3),
            "non_2xx": errs["status"], "socket_errors": {k: v for k, v in errs.items() if k != "status"},
            "per_instance": summaries if len(servers) > 1 else None,
            # Token phases: how many prepared requests there were and whether they ran out
            # before the duration did (the rate is over the time actually spent).
            **({"supply": sum(s["supply"] for s in summaries),
                "supply_exhausted": all(s["supply_exhausted"] for s in summaries)}
               if "supply" in summaries[0] else {}),
            "cpu_cores_used": {
                "service": round(server_cpu / wall, 2),
                "load_driver": round(driver_cpu / wall, 2),
                **{k: round(v / wall, 2) for k, v in aux_cpu.items()},
                "other": round(other / wall, 2),
                "steal": round(steal / wall, 2),
                "machine_busy": round(machine_busy / wall, 2),
                "machine_cores": ncpu,
            },
            "service_cpu_ms_per_request": round(server_cpu * 1000 / reqs, 4) if reqs else None,
            "loadavg_before": load0,
            **rss.result(load_s=duration),
        }
        problems = []
        if reqs == 0:
            problems.append("no request completed")
        if errs["status"]:
            problems.append(f"{errs['status']} non-2xx responses")
        if errs["connect"] or errs["write"] or errs["timeout"]:
            problems.append(f"socket errors {result['socket_errors']}")
        for s in servers:
            if s.proc and s.proc.poll() is not None:
                problems.append(f"{s.name} exited with {s.proc.returncode}")
        if problems:
            result["failed"] = "; ".join(problems)
        log(f"  {result['rps']} req/s  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
            f"peak RSS {result['peak_rss_mib']} MiB (during load {result['peak_rss_during_load_mib']})  "
            f"cpu {result['cpu_cores_used']}")
        return result

    def abandoned_logins(self, server: Server, clients: int, duration: float,
                         hold_s: float = 0.3, cap_mib: int = 1024) -> dict:
        """Clients that give up: each sends a login, waits `hold_s`, closes the socket and
        starts over. The hashing bound must hold for these too (a phone on a bad network, a
        proxy's timeout, an attacker). Stops early when the service's RSS passes `cap_mib`."""
        log(f"{self.name}: login_abandoned: {clients} clients closing after {hold_s}s, {duration}s")
        bodies = [json.dumps({"email": u, "password": PASSWORD}).encode() for u in self.users]
        reqs = [b"POST /auth/login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies]
        stop = threading.Event()
        sent = [0] * clients

        def client(k: int) -> None:
            while not stop.is_set():
                try:
                    with socket.create_connection((HOST, server.port), timeout=5) as sock:
                        sock.sendall(reqs[(k + sent[k]) % len(reqs)])
                        sent[k] += 1
                        stop.wait(hold_s)
                except OSError:
                    stop.wait(0.05)

        capped = False
        threads_peak = 0
        with RssSampler([server.pid]) as rss:
            workers = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
            for w in workers:
                w.start()
            deadline = time.monotonic() + duration
            while time.monotonic() < deadline:
                m = re.search(r"^Threads:\s*(\d+)", read(f"/proc/{server.pid}/status"), re.M)
                threads_peak = max(threads_peak, int(m.group(1)) if m else 0)
                if vm_kib(server.pid, "VmRSS") > cap_mib * 1024:
                    capped = True
                    break
                time.sleep(0.05)
            stop.set()
            for w in workers:
                w.join(10)
            time.sleep(1.0)  # hashes already running finish: their memory is counted
        result = {"clients": clients, "hold_s": hold_s, "duration_s": duration,
                  "logins_sent": sum(sent), "capped_at_mib": cap_mib if capped else None,
                  "peak_threads": threads_peak, **rss.result()}
        if server.proc and server.proc.poll() is not None:
            result["failed"] = f"{server.name} exited with {server.proc.returncode}"
            self.result["failures"].append(f"{self.name}/login_abandoned: {result['failed']}")
        # Let the service settle before the next phase.
        for _ in range(100):
            if vm_kib(server.pid, "VmRSS") < 200 * 1024:
                break
            time.sleep(0.1)
        log(f"  peak RSS {result['peak_rss_mib']} MiB, peak threads {threads_peak}"
            + (f" (stopped at the {cap_mib} MiB cap)" if capped else ""))
        self.result["login_abandoned"] = result
        return result

    def audit_chain_ceiling(self, seconds: int, clients_list=(1, 8),
                            chains_list=(1,)) -> dict:
        """PostgreSQL: how many login write transactions per second the audit trail admits
        (bench/audit_chain.sql under pgbench) with each number of chains (`-D chains`, as
        AUDIT_CHAINS) and clients, in one run. With one chain every audited change takes
        the same advisory lock, which bounds logins/s however many instances run."""
        out: dict = {}
        if not shutil.which("pgbench"):
            return {"skipped": "pgbench not installed"}
        for chains in chains_list:
            for clients in clients_list:
                res = subprocess.run(
                    ["pgbench", "-n", "-M", "extended", "-c", str(clients),
                     "-j", str(min(2, clients)), "-T", str(seconds), "-D", f"chains={chains}",
                     "-f", str(BENCH / "audit_chain.sql"), f"{PG_ADMIN_URL}/{self.db_name}"],
                    capture_output=True, text=True, timeout=seconds + 60)
                tps = re.search(r"tps = ([\d.]+)", res.stdout)
                lat = re.search(r"latency average = ([\d.]+) ms", res.stdout)
                if res.returncode != 0 or not tps:
                    raise BenchError(f"pgbench failed: {res.stderr.strip()[-500:]}")
                key = f"c{clients}" if chains_list == (1,) else f"chains{chains}_c{clients}"
                out[key] = {"tps": round(float(tps.group(1)), 1),
                            "latency_ms": float(lat.group(1)) if lat else None}
                log(f"{self.name}: audit trail, {chains} chain(s), {clients} clients: {out[key]}")
        return out

    def sizing(self) -> None:
        """--sizing (postgres): session checks and logins on 1, 2 and 4 instances sharing
        PostgreSQL + Redis, instance i pinned to core i mod nproc with taskset; the database
        rows and Redis round trips per login and per session check; and the audit trail's
        transaction ceiling with 1 chain (before partitioning) and 16 (AUDIT_CHAINS default)
        at 8 and 32 writers. One run, so the figures compare as ratios."""
        p = self.p
        r = self.result
        cores = os.cpu_count() or 1
        r["sizing"] = {"cores": cores, "pinning": "taskset -c (i mod cores)"
                       if shutil.which("taskset") else "none (taskset missing)"}
        for n in (1, 2, 4):
            servers = [self.new_server(f"x{n}-{i}", cpus=str(i % cores)) for i in range(n)]
            for server in servers:
                server.start()
            me = self.phase(f"me_c64_n{n}", "me.lua", p["me_c"], p["phase_s"], servers=servers)
            writes = self._writes_during(
                lambda: self.phase(f"login_c8_n{n}", "login.lua", p["login_c"], p["phase_s"],
                                   servers=servers), p["stats_wait_s"])
            logins = r["phases"][f"login_c8_n{n}"]["requests"]
            r["sizing"][f"n{n}"] = {
                "me_rps": me["rps"], "login_rps": r["phases"][f"login_c8_n{n}"]["rps"],
                "login_rows_written_per_login": round(writes["rows_written"] / max(1, logins), 2),
                "login_xact_commit_per_login": round(writes["delta"]["xact_commit"] / max(1, logins), 2),
            }
            log(f"{self.name}: sizing {n} instance(s): {r['sizing'][f'n{n}']}")
            for server in servers:
                server.stop()
        r["argon2"] = self.argon2_ceiling()
        r["audit_chain_ceiling"] = self.audit_chain_ceiling(
            max(1, int(p["phase_s"])), clients_list=(8, 32), chains_list=(1, 16))

    def writes_during(self, fn) -> dict:
        """Database writes made while `fn` runs (a /auth/me phase)."""
        wait = self.p["stats_wait_s"]
        age = round(time.time() - self.result.get("sessions_created_at", time.time()), 1)
        result = self._writes_during(fn, wait)
        result["session_age_at_start_s"] = age
        return result

    def _writes_during(self, fn, wait: float) -> dict:
        if self.db_name:
            # Backends flush their statistics at most once a second and an idle one within
            # 10 s: wait, read, run, wait, read.
            time.sleep(wait)
            before = pg_db_stats(self.db_name)
            fn()
            time.sleep(wait)
            after = pg_db_stats(self.db_name)
            delta = {k: after[k] - before[k] for k in before if k != "tables"}
            tables = {t: after["tables"].get(t, 0) - before["tables"].get(t, 0) for t in after["tables"]}
            writes = delta["tup_inserted"] + delta["tup_updated"] + delta["tup_deleted"]
            return {"method": "pg_stat_database / pg_stat_user_tables delta", "rows_written": writes,
                    "delta": delta, "tables_written": {t: v for t, v in tables.items() if v},
                    "stats_wait_s": wait}
        before = sqlite_state(self.sqlite_path)
        fn()
        after = sqlite_state(self.sqlite_path)
        changed = {t: after["rows"][t] - before["rows"].get(t, 0) for t in after["rows"]
                   if after["rows"][t] != before["rows"].get(t, 0)}
        touched = sum(1 for k, v in after["sessions_last_seen"].items()
                      if k in before["sessions_last_seen"] and before["sessions_last_seen"][k] != v)
        if touched:
            changed["sessions (last_seen_at updated)"] = touched
        return {"method": "row counts of every table + sessions.last_seen_at of each row",
                "rows_written": sum(abs(v) for v in changed.values()),
                "tables_written": changed}

    def store_commands(self, port: int, token: str) -> dict:
        """Counts the Redis commands of N sequential GET /auth/me with one session, and of
        a few sequential logins: `redis-cli monitor`, filtered on this run's key prefix."""
        def monitored(action, n: int) -> dict:
            mon = subprocess.Popen(["redis-cli", "-u", REDIS_URL, "monitor"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
            time.sleep(0.3)
            for i in range(n):
                action(i)
            time.sleep(0.3)
            mon.terminate()
            out, _ = mon.communicate(timeout=10)
            # MONITOR shows what clients send ("[0 127.0.0.1:port]") and, separately, what
            # Lua scripts run inside Redis ("[0 lua]"): only the former are round trips.
            sent: dict[str, int] = {}
            in_scripts: dict[str, int] = {}
            for line in out.splitlines():
                m = re.search(r'\[\d+ ([^\]]+)\] "(\w+)"', line)
                if not m:
                    continue
                cmd = m.group(2).upper()
                if m.group(1) == "lua":
                    if self.prefix in line:
                        in_scripts[cmd] = in_scripts.get(cmd, 0) + 1
                elif self.prefix in line:
                    sent[cmd] = sent.get(cmd, 0) + 1
            return {"requests": n, "round_trips": sent, "commands_inside_scripts": in_scripts,
                    "round_trips_per_request": round(sum(sent.values()) / n, 2)}

        def me(_: int) -> None:
            status, _, _ = http_request(port, "GET", "/auth/me", headers={"Cookie": f"session={token}"})
            if status != 200:
                raise BenchError(f"probe /auth/me answered {status}")

        def login(i: int) -> None:
            status, _, _ = http_request(port, "POST", "/auth/login",
                                        {"email": self.users[i % len(self.users)], "password": PASSWORD})
            if status != 200:
                raise BenchError(f"probe login answered {status}")

        return {"session_check": monitored(me, self.p["probe_n"]), "login": monitored(login, 5)}

    # -- the whole sequence --

    def run(self) -> dict:
        p = self.p
        r = self.result
        r["metrics_scrape_interval_s"] = p["scrape_interval_s"]
        self.start_scraper(p["scrape_interval_s"])
        if self.db_name:
            psql(f"CREATE DATABASE {self.db_name}")
        # First start: a fresh database, migrations applied.
        first = self.new_server("setup")
        r["first_start_with_migrations_s"] = round(first.start(), 3)
        log(f"{self.name}: first start (migrations) {r['first_start_with_migrations_s']} s; creating users")
        self.create_users()
        first.stop()
        # Cold start: binary start -> /readyz 200 on the existing database.
        colds = []
        for i in range(p["cold_starts"]):
            server = self.new_server(f"cold{i}")
            colds.append(round(server.start(), 3))
            if i < p["cold_starts"] - 1:
                server.stop()
        r["cold_start_s"] = colds
        main = self.main = self.servers[-1]
        r["sessions_created_at"] = time.time()
        log(f"{self.name}: cold starts {colds} s; logging in {p['sessions']} sessions")
        tokens = self.login_sessions(main.port, p["sessions"])
        r["idle_rss_mib"] = round(vm_kib(main.pid, "VmRSS") / 1024, 1)
        self.start_keepalive(tokens, p["keepalive_s"])

        self.phase("healthz_c64", "healthz.lua", p["health_c"], p["phase_s"])
        r["session_check_writes"] = self.writes_during(
            lambda: self.phase("me_c64", "me.lua", p["me_c"], p["phase_s"]))
        # Diagnostic: the session check alone (GET /auth/csrf reads no database), to split
        # the /auth/me cost between the session check and the handler's own reads.
        self.phase("csrf_c64", "me.lua", p["me_c"], p["phase_s"],
                   env={"BENCH_SESSION_PATH": "/auth/csrf"})
        me_reqs = r["phases"]["me_c64"]["requests"]
        if self.db_name:
            d = r["session_check_writes"]["delta"]
            r["session_check_writes"]["xact_commit_per_request"] = round(d["xact_commit"] / max(1, me_reqs), 2)
            r["store_round_trips"] = self.store_commands(main.port, tokens[0])
        if not p.get("sizing"):
            self.token_phases(main)

        if p.get("sizing"):
            main.stop()
            self.sizing()
            return r

        r["argon2"] = self.argon2_ceiling()
        log(f"{self.name}: Argon2 {r['argon2']}")
        self.phase("login_c8", "login.lua", p["login_c"], p["phase_s"])
        self.phase("register_c8", "register.lua", p["register_c"], p["phase_s"])
        # Diagnostic: what 500 busy connections cost without any hashing.
        self.phase("healthz_c500", "healthz.lua", p["flood_c"], max(1, p["flood_s"] // 5))
        # 500 concurrent logins: every one queues for a hashing permit; long timeout.
        self.phase("login_c500", "login.lua", p["flood_c"], p["flood_s"], timeout_s=120)
        # Last of the login phases: when the bound does not hold, it leaves the process big.
        self.abandoned_logins(main, p["abandon_clients"], p["abandon_s"])

        if p["scaleout"] and self.name == "postgres":
            second = self.new_server("second")
            second.start()
            both = [main, second]
            # By now the sessions are older than a minute: this phase also shows the
            # durable last_seen_at refresh (at most one UPDATE per session per minute).
            r["session_check_writes_later"] = self.writes_during(
                lambda: self.phase("me_c64_x2", "me.lua", p["me_c"], p["phase_s"], servers=both))
            self.phase("login_c8_x2", "login.lua", p["login_c"], p["phase_s"], servers=both)
            second.stop()
            # The same with one hashing slot per instance: each instance then uses one core
            # for Argon2, so on this 2-core machine a second instance has a core to add.
            slot_a = self.new_server("slot-a", PASSWORD_HASHING_CONCURRENCY="1")
            slot_a.start()
            self.phase("login_c8_1slot", "login.lua", p["login_c"], p["phase_s"], servers=[slot_a])
            slot_b = self.new_server("slot-b", PASSWORD_HASHING_CONCURRENCY="1")
            slot_b.start()
            self.phase("login_c8_1slot_x2", "login.lua", p["login_c"], p["phase_s"], servers=[slot_a, slot_b])
            slot_a.stop()
            slot_b.stop()
            r["audit_chain_ceiling"] = self.audit_chain_ceiling(max(1, int(p["phase_s"] // 2)))

        if p["info_logs"]:
            main.stop()
            info = self.new_server("info", RUST_LOG="info")
            r["cold_start_s"].append(round(info.start(), 3))
            self.phase("healthz_c64_info", "healthz.lua", p["health_c"], p["phase_s"], servers=[info])
            writes = self.writes_during(
                lambda: self.phase("me_c64_info", "me.lua", p["me_c"], p["phase_s"], servers=[info]))
            r.setdefault("session_check_writes_later", writes)
            r["info_log_bytes"] = info.log_path.stat().st_size
        self.stop_keepalive()
        if self.baseline:
            self.run_baseline()
        return r

    def run_baseline(self) -> None:
        """The build before the change (`--baseline-binary`), in the same run, on the same
        database and store: its Argon2 figure, logins, registrations and session checks,
        for the new/old ratios in the targets. It must know every migration the new build
        applied: an older binary refuses a newer schema at start (`baseline_error`)."""
        p = self.p
        r = self.result
        for server in self.servers:
            server.stop()
        old = self.new_server("baseline", binary=self.baseline)
        try:
            old.start()
        except BenchError as e:
            r["baseline_error"] = str(e)[-400:]
            log(f"{self.name}: the baseline binary did not start (a newer schema?): skipped")
            return
        log(f"{self.name}: baseline binary {self.baseline}")
        res = subprocess.run([str(self.baseline), "hash-benchmark", "--rounds", str(p["hash_rounds"])],
                             env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=300)
        if res.returncode == 0:
            r["baseline_argon2"] = json.loads(res.stdout.strip().splitlines()[-1])
        r["baseline_idle_rss_mib"] = round(vm_kib(old.pid, "VmRSS") / 1024, 1)
        r["baseline_session_check_writes"] = self.writes_during(
            lambda: self.phase("base_me_c64", "me.lua", p["me_c"], p["phase_s"], servers=[old]))
        self.phase("base_login_c8", "login.lua", p["login_c"], p["phase_s"], servers=[old])
        self.phase("base_register_c8", "register.lua", p["register_c"], p["phase_s"], servers=[old])
        old.stop()


# --- Targets, table, main ---------------------------------------------------------------------

def targets(deps: dict) -> list[dict]:
    rows = []

    def add(dep, name, value, limit, ok, unit=""):
        # ok None: reported for information, not a target.
        rows.append({"deployment": dep, "target": name, "value": value, "limit": limit,
                     "unit": unit, "met": None if ok is None else bool(ok)})

    for dep, r in deps.items():
        ph = r.get("phases", {})
        if "me_c64" in ph and "healthz_c64" in ph:
            ratio = ph["me_c64"]["rps"] / max(1e-9, ph["healthz_c64"]["rps"])
            add(dep, "session check / bare route throughput", round(ratio, 3), ">= 0.5", ratio >= 0.5)
            add(dep, "session check p99 at c64", ph["me_c64"]["p99_ms"], "<= 5", ph["me_c64"]["p99_ms"] <= 5, "ms")
        a = r.get("argon2")
        if a:
            ceiling = a["ceiling_per_second"]
            for phase, label in (("login_c8", "logins/s"), ("register_c8", "registrations/s")):
                if phase in ph:
                    ratio = ph[phase]["rps"] / ceiling
                    add(dep, f"{label} / Argon2 ceiling ({ceiling:.2f}/s)", round(ratio, 3), ">= 0.95", ratio >= 0.95)
            if "login_c500" in ph:
                limit = a["hashes_in_flight"] * a["memory_kib"] / 1024 + 64
                peak = ph["login_c500"]["peak_rss_mib"]
                add(dep, f"peak RSS, 500 concurrent logins ({a['hashes_in_flight']} x {a['memory_kib'] // 1024} MiB + 64)",
                    peak, f"<= {limit:.0f}", peak <= limit, "MiB")
            ab = r.get("login_abandoned")
            if ab:
                limit = a["hashes_in_flight"] * a["memory_kib"] / 1024 + 64
                add(dep, "peak RSS, logins from clients that give up (same bound)",
                    ab["peak_rss_mib"], f"<= {limit:.0f}", ab["peak_rss_mib"] <= limit, "MiB")
        w = r.get("session_check_writes")
        if w:
            # The one write a session check may make: refreshing the durable last_seen_at,
            # at most once per session per SESSION_TOUCH_INTERVAL_SECONDS (sessions.rs).
            refresh = sum(v for t, v in w["tables_written"].items() if t.startswith("sessions"))
            other = w["rows_written"] - refresh
            add(dep, "database rows written by session checks (besides the refresh)", other, "== 0", other == 0)
            add(dep, f"  durable last_seen_at refreshes (sessions {w.get('session_age_at_start_s')} s old)",
                refresh, "<= 1/interval", None)
        later = r.get("session_check_writes_later")
        if later:
            refresh = sum(v for t, v in later["tables_written"].items() if t.startswith("sessions"))
            add(dep, f"  the same, later (sessions {later.get('session_age_at_start_s')} s old)",
                refresh, "<= 1/interval", None)
        for phase in ("me_c64", "me_c64_x2"):
            if phase in ph:
                tail = ph[phase]["p99_ms"] / max(1e-9, ph[phase]["p50_ms"])
                add(dep, f"session check p99 / p50 ({phase})", round(tail, 2), "<= 3", tail <= 3)
        a = r.get("argon2")
        if a and "seconds_per_hash_fresh_memory" in a:
            add(dep, "  Argon2 ms/hash: in a kept buffer (huge pages) / base pages / fresh memory",
                f"{a['seconds_per_hash_huge_pages'] * 1000:.1f}/{a['seconds_per_hash_base_pages'] * 1000:.1f}/"
                f"{a['seconds_per_hash_fresh_memory'] * 1000:.1f}", "", None)
        for phase, base in (("login_c8", "base_login_c8"), ("register_c8", "base_register_c8")):
            if phase in ph and base in ph:
                ratio = ph[phase]["rps"] / max(1e-9, ph[base]["rps"])
                add(dep, f"{phase} / the baseline build's ({ph[base]['rps']}/s)", round(ratio, 3), ">= 1.2",
                    ratio >= 1.2)
            # Under other load the throughput ratio follows whoever else is busy; the
            # service CPU per request does not (much): the load-independent comparison.
            if phase in ph and base in ph and ph[base].get("service_cpu_ms_per_request"):
                new_ms, old_ms = ph[phase]["service_cpu_ms_per_request"], ph[base]["service_cpu_ms_per_request"]
                add(dep, f"  service CPU per request, {phase}: baseline / new ({old_ms:.1f} / {new_ms:.1f} ms)",
                    round(old_ms / max(1e-9, new_ms), 3), "", None)
            if a and phase in ph and ph[phase].get("service_cpu_ms_per_request"):
                hashes = a["seconds_per_hash"] * 1000 / ph[phase]["service_cpu_ms_per_request"]
                add(dep, f"  in-buffer hash time / service CPU per request ({phase})", round(hashes, 3),
                    "", None)
        if a and "login_c8" in ph:
            limit = a["hashes_in_flight"] * a["memory_kib"] / 1024 + 64
            add(dep, "peak RSS, 8 concurrent logins (same bound)", ph["login_c8"]["peak_rss_mib"],
                f"<= {limit:.0f}", ph["login_c8"]["peak_rss_mib"] <= limit, "MiB")
        for label, key, phase in (("", "session_check_writes", "me_c64"),
                                  ("later, ", "session_check_writes_later", "me_c64_x2"),
                                  ("baseline build, ", "baseline_session_check_writes", "base_me_c64")):
            w = r.get(key)
            if w and phase in ph and ph[phase]["requests"]:
                refresh = sum(v for t, v in w["tables_written"].items() if t.startswith("sessions"))
                add(dep, f"  session rows written per 1,000 session checks ({label}{phase})",
                    round(refresh * 1000 / ph[phase]["requests"], 4), "", None)
        k = r.get("session_hour_writes")
        if k and "writes_per_session_hour" in k:
            add(dep, f"  durable writes per active session-hour ({k['tokens']} sessions, {k['elapsed_s']} s)",
                k["writes_per_session_hour"], "", None)
        if r.get("idle_rss_mib") is not None:
            add(dep, "  idle RSS after start and the first logins", r["idle_rss_mib"], "", None, "MiB")
        if r.get("reference_idle_rss_mib") is not None:
            # Item 5: memory and start-up next to the reference provider's.
            add(dep, "  the reference provider's idle RSS after start", r["reference_idle_rss_mib"], "", None, "MiB")
            add(dep, "  the reference provider's start to its first answer", r["reference_cold_start_s"], "", None, "s")
        for kind in TOKEN_PHASES:
            ours, ref = ph.get(kind), ph.get(f"ref_{kind}")
            if not ours or not ref:
                continue
            # The targets are on the token endpoint; introspection and userinfo are
            # reported the same way, for information.
            endpoint = kind in TOKEN_ENDPOINT_PHASES
            ratio = ours["rps"] / max(1e-9, ref["rps"])
            add(dep, f"{kind}: throughput / the reference's ({ref['rps']}/s)", round(ratio, 2),
                ">= 5" if endpoint else "", (ratio >= 5) if endpoint else None)
            tail = ours["p99_ms"] / max(1e-9, ref["p99_ms"])
            add(dep, f"{kind}: p99 / the reference's ({ref['p99_ms']} ms), c={ours['connections']}",
                round(tail, 3), "<= 0.2" if endpoint else "", (tail <= 0.2) if endpoint else None)
        if "jwt_verify" in r:
            v = r["jwt_verify"]
            add(dep, f"JWT verification in the helper / raw ES256 verify ({v['raw_verifies_per_s']}/s)",
                v["ratio"], ">= 0.8", v["ratio"] >= 0.8)
        for name, w in r.get("token_writes", {}).items():
            # PostgreSQL's statistics count inserts, updates and deletes; SQLite's row
            # counts only net changes, so there the figures are for information. The target
            # is on token state (grants, sessions, ...); the audit trail's one record per
            # issued or refreshed token is kept on purpose and reported beside it.
            exact = w["method"].startswith("pg_stat")
            by_table = w.get("per_operation_by_table", {})
            audit = round(sum(v for t, v in by_table.items() if t.startswith("audit")), 3)
            state = round(sum(v for t, v in by_table.items() if not t.startswith("audit")), 3)
            add(dep, f"token-state rows written per operation ({name})", state, "<= 1",
                (state <= 1) if exact else None)
            add(dep, f"  audit records per operation ({name}; all rows: {w['per_operation']})", audit, "", None)
        if r.get("cold_start_s"):
            worst = max(r["cold_start_s"])
            add(dep, "cold start to /readyz 200 (worst of runs)", worst, "<= 1", worst <= 1.0, "s")
    return rows


def print_tokens_table(results: dict) -> None:
    """The token phases side by side: ours / the reference provider, same concurrency."""
    rows = []
    for dep, r in results["deployments"].items():
        ph = r.get("phases", {})
        for kind in TOKEN_PHASES:
            if kind not in ph:
                continue
            ours, ref = ph[kind], ph.get(f"ref_{kind}")
            w = r.get("token_writes", {}).get(kind)
            rows.append(
                f"{dep:<10} {kind:<18} {ours['connections']:>4} {ours['rps']:>9.1f} "
                + (f"{ref['rps']:>9.1f} {ours['rps'] / max(1e-9, ref['rps']):>6.2f} " if ref else f"{'-':>9} {'-':>6} ")
                + f"{ours['p99_ms']:>9.2f} "
                + (f"{ref['p99_ms']:>9.2f} {ours['p99_ms'] / max(1e-9, ref['p99_ms']):>6.3f} " if ref else f"{'-':>9} {'-':>6} ")
                + (f"{w['per_operation']:>8}" if w else f"{'':>8}"))
    if not rows:
        return
    head = (f"{'deployment':<10} {'token phase':<18} {'conc':>4} {'req/s':>9} {'ref req/s':>9} {'ratio':>6} "
            f"{'p99 ms':>9} {'ref p99':>9} {'ratio':>6} {'rows/op':>8}")
    print()
    print(head)
    print("-" * len(head))
    print("\n".join(rows))


def print_table(results: dict) -> None:
    head = f"{'deployment':<10} {'phase':<22} {'conc':>4} {'inst':>4} {'req/s':>9} {'p50 ms':>8} " \
           f"{'p99 ms':>9} {'non2xx':>6} {'RSS MiB':>8} {'(load)':>7} {'cpu srv/drv/pg/redis/other/steal':>33}"
    print()
    print(head)
    print("-" * len(head))
    for dep, r in results["deployments"].items():
        for name, ph in r.get("phases", {}).items():
            c = ph["cpu_cores_used"]
            cpu = "/".join(f"{c.get(k, 0):.2f}" for k in ("service", "load_driver", "postgres", "redis", "other", "steal"))
            # Several instances: RSS of all of them together.
            rss = ph["peak_rss_sum_mib"] if ph["instances"] > 1 else ph["peak_rss_mib"]
            print(f"{dep:<10} {name:<22} {ph['connections']:>4} {ph['instances']:>4} {ph['rps']:>9.1f} "
                  f"{ph['p50_ms']:>8.2f} {ph['p99_ms']:>9.2f} {ph['non_2xx']:>6} "
                  f"{rss:>8.1f} {ph.get('peak_rss_during_load_mib', 0):>7.1f} {cpu:>33}")
        if r.get("argon2"):
            a = r["argon2"]
            print(f"{dep:<10} {'argon2 ceiling':<22} {'':>4} {'':>4} {a['ceiling_per_second']:>9.2f}   "
                  f"({a['seconds_per_hash'] * 1000:.1f} ms/hash x {a['cores']} cores; all cores at once: "
                  f"{a['parallel_ceiling_per_second']:.2f}/s)")
            if "seconds_per_hash_fresh_memory" in a:
                print(f"{dep:<10} {'argon2 ms/hash':<22} {'':>4} {'':>4} {'':>9}   (kept buffer, huge pages "
                      f"{a['seconds_per_hash_huge_pages'] * 1000:.1f} (AnonHugePages {a['anon_huge_pages_kib']} kB), "
                      f"base pages {a['seconds_per_hash_base_pages'] * 1000:.1f}, wipe "
                      f"{a['seconds_per_wipe'] * 1000:.1f}; fresh memory each hash "
                      f"{a['seconds_per_hash_fresh_memory'] * 1000:.1f})")
        if r.get("baseline_argon2"):
            b = r["baseline_argon2"]
            print(f"{dep:<10} {'baseline argon2':<22} {'':>4} {'':>4} {b['ceiling_per_second']:>9.2f}   "
                  f"({b['seconds_per_hash'] * 1000:.1f} ms/hash, its own hash-benchmark)")
        if r.get("audit_chain_ceiling", {}).get("c8"):
            ac = r["audit_chain_ceiling"]
            print(f"{dep:<10} {'audit chain tx/s':<22} {'8':>4} {'':>4} {ac['c8']['tps']:>9.1f}   "
                  f"(1 client: {ac['c1']['tps']:.1f} tx/s, {ac['c1']['latency_ms']} ms each; pgbench, "
                  f"bench/audit_chain.sql)")
        if r.get("login_abandoned"):
            ab = r["login_abandoned"]
            print(f"{dep:<10} {'login_abandoned':<22} {ab['clients']:>4} {'1':>4} {'':>9} {'':>8} {'':>9} "
                  f"{'':>6} {ab['peak_rss_mib']:>8.1f}   ({ab['logins_sent']} logins sent, closed after "
                  f"{ab['hold_s']} s; peak threads {ab['peak_threads']})")
        if r.get("cold_start_s"):
            print(f"{dep:<10} {'cold start s':<22} {r['cold_start_s']}")
    print_tokens_table(results)
    print()
    if results.get("mode") == "smoke":
        print("smoke run: tiny Argon2 costs and 1-2 s phases, so the targets below mean nothing;"
              " only whether every phase worked does")
    print(f"{'deployment':<10} {'target':<62} {'value':>9} {'limit':>8}  result")
    for t in results["targets"]:
        print(f"{t['deployment']:<10} {t['target']:<62} {t['value']:>9} {t['limit']:>8}  "
              f"{'info' if t['met'] is None else 'met' if t['met'] else 'MISSED'}")
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="a few seconds per phase, small Argon2 costs")
    ap.add_argument("--binary", type=Path, help="use this binary instead of building the release one")
    ap.add_argument("--deployments", default="embedded,postgres",
                    help="comma-separated: embedded, postgres (default both)")
    ap.add_argument("--duration", type=float, help="seconds per phase (default 15, smoke 1)")
    ap.add_argument("--driver", choices=["wrk", "python"], help="load driver (default wrk; "
                    "python only as a --smoke fallback when wrk is missing)")
    ap.add_argument("--sizing", action="store_true",
                    help="postgres: after the session checks, only the sizing phases (1, 2, 4 "
                    "instances pinned with taskset; audit trail with 1 vs 16 chains at 8 and 32 "
                    "writers) instead of the rest of the run")
    ap.add_argument("--baseline-binary", type=Path, metavar="PATH",
                    help="also run the build before a change (e.g. main's release binary) in the "
                    "same run: its Argon2 figure, logins, registrations and session checks, "
                    "for new/old ratios")
    ap.add_argument("--retries", type=int, metavar="N",
                    help="repeat a phase at most N times when other work on the machine made it "
                    "noisy (default 2 for a full run, 0 for --smoke)")
    ap.add_argument("--output", type=Path, help="JSON path (default bench/results/<timestamp>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, SQLite file)")
    ap.add_argument("--reference", action="store_true",
                    help="also run the token phases against the reference OpenID Provider "
                    "(oidc-provider, bench/reference/) in each deployment, side by side")
    ap.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the service and hash-benchmark (repeatable), "
                    "e.g. GLIBC_TUNABLES=glibc.malloc.hugetlb=1 or PASSWORD_HASHING_CONCURRENCY=4")
    ap.add_argument("--scrape-interval", type=float, metavar="SECONDS",
                    help="GET /metrics on every instance this often, like Prometheus "
                    "(default 15; 0: never, which lets the metrics recorder grow)")
    ap.add_argument("--wait-quiet", type=float, default=None, metavar="SECONDS",
                    help="first wait up to SECONDS for the machine to be idle (other work "
                    "below 0.25 core over 3 s); default 300 for a full run, 0 for --smoke")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)

    profile = dict(PROFILES["smoke" if args.smoke else "full"])
    if args.duration:
        profile["phase_s"] = args.duration
    if args.scrape_interval is not None:
        profile["scrape_interval_s"] = args.scrape_interval
    if args.retries is not None:
        profile["retries"] = max(0, args.retries)
    extra_env = {}
    for item in args.service_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--service-env takes KEY=VALUE, not {item!r}")
        extra_env[key] = value
    profile["service_env"] = extra_env
    profile["sizing"] = args.sizing
    profile["reference"] = args.reference
    deployments = [d.strip() for d in args.deployments.split(",") if d.strip()]
    if not set(deployments) <= {"embedded", "postgres"}:
        ap.error("--deployments takes embedded and/or postgres")

    driver = args.driver or ("wrk" if shutil.which("wrk") else "python")
    if driver == "python" and not args.smoke:
        print("wrk is required for a measured run: apt-get install -y wrk", file=sys.stderr)
        return 2
    if driver == "python":
        log("wrk not found: using the slow Python driver (smoke only)")

    if args.binary:
        binary = args.binary.resolve()
    else:
        log("building the release binary (nice -n 10 cargo build --release)")
        res = subprocess.run(["nice", "-n", "10", "cargo", "build", "--release"], cwd=ROOT)
        if res.returncode != 0:
            return 1
        binary = ROOT / "target" / "release" / "logicredit-auth"
    if not binary.exists():
        print(f"no binary at {binary}", file=sys.stderr)
        return 2
    baseline = args.baseline_binary.resolve() if args.baseline_binary else None
    if baseline and not baseline.exists():
        print(f"no baseline binary at {baseline}", file=sys.stderr)
        return 2

    if not args.sizing:
        try:
            ensure_node_packages()
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            print(str(e), file=sys.stderr)
            return 1

    quiet_limit = args.wait_quiet if args.wait_quiet is not None else (0 if args.smoke else 300)
    quiet = wait_for_quiet(quiet_limit) if quiet_limit > 0 else None

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id = secrets.token_hex(4)
    workroot = Path(tempfile.mkdtemp(prefix=f"lcauth-bench-{run_id}-"))
    results = {
        "harness": "bench/run.py", "mode": "smoke" if args.smoke else "full",
        "started_at": stamp, "run_id": run_id, "binary": str(binary),
        "baseline_binary": str(baseline) if baseline else None,
        "binary_mtime": dt.datetime.fromtimestamp(binary.stat().st_mtime, dt.timezone.utc).isoformat(),
        "driver": driver, "profile": profile, "machine": machine(), "quiet_wait": quiet,
        "deployments": {},
    }
    log(f"run {run_id}: {results['mode']} on {results['machine']['cpu_model']} x{results['machine']['nproc']}, "
        f"load {results['machine']['loadavg_at_start']}; work folder {workroot}")
    failures: list[str] = []
    started = time.monotonic()
    try:
        for name in deployments:
            dep = Deployment(name, binary, profile, run_id, driver, workroot, baseline)
            try:
                results["deployments"][name] = dep.run()
            except (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
                failures.append(f"{name}: {e}")
                log(f"FAILED {name}: {e}")
                results["deployments"][name] = dep.result
            finally:
                dep.cleanup()
                failures.extend(dep.result.get("failures", []))
    except KeyboardInterrupt:
        failures.append("interrupted")
    finally:
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["targets"] = targets(results["deployments"])
    results["failures"] = sorted(set(failures))
    out = args.output or RESULTS / f"{stamp}{'-smoke' if args.smoke else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    log(f"wrote {out} ({results['elapsed_s']} s)")
    if results["failures"]:
        log("FAILED: " + "; ".join(results["failures"]))
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
