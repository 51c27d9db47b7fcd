#!/usr/bin/env python3
"""Reliability drills against a real Gofer on the real Docker engine; results go in docs/reliability.md.

    python3 scripts/reliability.py kill9 [--runs 40] [--seed 1]   # kill -9 loop: nothing runs twice, nothing lost
    python3 scripts/reliability.py load [--runs 200] [--readers 100]  # queued runs under concurrent readers

Run `bash scripts/ensure-docker.sh` and `cargo build -j2 -p gofer` first (the script uses target/debug/gofer, or
target/release/gofer when GOFER_BIN points at it). Standard library only.
"""

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("GOFER_BIN", os.path.join(ROOT, "target", "debug", "gofer"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gofer:
    """A gofer server on its own data dir, started and killed at will."""

    def __init__(self, env=None):
        self.dir = tempfile.mkdtemp(prefix="gofer-reliability-")
        self.port, self.external = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, NO_COLOR="1", **(env or {}))
        self.log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [BIN, "service", "start", "--bind-address", f"127.0.0.1:{self.port}",
             "--external-bind-address", f"127.0.0.1:{self.external}", "--data-dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=self.log, stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gofer exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if self.call("GET", "/api/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("gofer did not answer /api/health within 30s")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def call(self, method, path, body=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method, path, body=None):
        status, raw = self.call(method, path, body)
        if status >= 300:
            raise SystemExit(f"{method} {path} answered {status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def register(self, config):
        base = f"/api/namespaces/default/pipelines/{config['id']}"
        version = self.json("POST", f"{base}/configs", {"config": config})["config"]["version"]
        self.json("POST", f"{base}/configs/{version}/deploy")

    def installation(self):
        with open(os.path.join(self.dir, "installation_id")) as f:
            return f.read().strip()

    def cleanup(self):
        self.stop()
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=dev.gofer.installation={self.installation()}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def task(task_id, script, **extra):
    return {"id": task_id, "image": "busybox:latest", "command": ["sh", "-c", script], **extra}


# What every run of the drill's pipeline must end as: status, exit code, attempt and the exact log.
EXPECTED = {
    "fetch": ("successful", 0, 1, "fetching\nfetched\n"),
    "build": ("successful", 0, 1, "building\n"),
    "flaky": ("failed", 3, 2, "attempt 2\n"),
    "report": ("successful", 0, 1, "reporting the failure\n"),
    "publish": ("successful", 0, 1, "publishing\n"),
}


def drill_pipeline():
    return {
        "id": "drill",
        "tasks": [
            task("fetch", "echo fetching; sleep 0.$(( $GOFER_RUN_ID % 9 + 1 )); echo fetched"),
            task("build", "echo building; sleep 0.5", depends_on={"fetch": "Success"}),
            task("flaky", "echo attempt $GOFER_TASK_ATTEMPT; sleep 0.3; exit 3", retries=1,
                 depends_on={"fetch": "Success"}),
            task("report", "echo reporting the failure", depends_on={"flaky": "Failure"}),
            task("publish", "echo publishing", depends_on={"build": "Success", "report": "Any"}),
        ],
    }


def kill9(args):
    random.seed(args.seed)
    gofer = Gofer()
    gofer.start()
    # Docker keeps only its last 256 events: follow them live from the start instead of asking afterwards.
    # `--since` also replays what happened before the listener was connected (the runs start right away).
    watcher = subprocess.Popen(
        ["docker", "events", "--since", str(int(time.time()) - 1), "--filter", "type=container",
         "--filter", "event=create",
         "--filter", f"label=dev.gofer.installation={gofer.installation()}", "--format", "{{json .Actor.Attributes}}"],
        stdout=subprocess.PIPE, text=True)
    # Read as they come: the engine drops events for a listener that does not keep up.
    events = []
    reader = threading.Thread(target=lambda: events.extend(watcher.stdout), daemon=True)
    reader.start()
    try:
        gofer.register(drill_pipeline())
        runs = [gofer.json("POST", "/api/namespaces/default/pipelines/drill/runs", {})["run_id"]
                for _ in range(args.runs)]
        kills = 0
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            time.sleep(random.uniform(0.2, 2.5))
            listed = gofer.json("GET", f"/api/namespaces/default/pipelines/drill/runs?limit={args.runs}")["runs"]
            if all(r["state"] == "complete" for r in listed) and len(listed) == len(runs):
                break
            gofer.kill9()
            kills += 1
            gofer.start()
        else:
            raise SystemExit(f"runs did not all complete within {args.timeout}s")
        # Containers go once their outcome is stored; give the last ones a moment, then read what Docker said.
        time.sleep(2)
        watcher.terminate()
        reader.join(timeout=10)
        created = {}
        for line in events:
            labels = json.loads(line)
            key = (labels["dev.gofer.run"], labels["dev.gofer.task"], labels["dev.gofer.attempt"])
            created[key] = created.get(key, 0) + 1
        twice = {k: n for k, n in created.items() if n > 1}
        wrong = []
        for run in runs:
            tasks = gofer.json("GET", f"/api/namespaces/default/pipelines/drill/runs/{run}/tasks")["task_executions"]
            for t in tasks:
                status, code, attempt, log = EXPECTED[t["task_id"]]
                got = (t["status"], t.get("exit_code"), t["attempt"])
                path = f"/api/namespaces/default/pipelines/drill/runs/{run}/tasks/{t['task_id']}/logs"
                logged = gofer.call("GET", path)[1].decode(errors="replace")
                if got != (status, code, attempt) or logged != log:
                    wrong.append((run, t["task_id"], got, logged, t.get("status_reason")))
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=dev.gofer.installation={gofer.installation()}"],
                              capture_output=True, text=True).stdout.split()
        tasks_total = len(runs) * len(EXPECTED)
        attempts_total = len(runs) * (len(EXPECTED) + 1)
        print(f"kill9: {len(runs)} runs, {tasks_total} tasks ({attempts_total} attempts), {kills} kill -9 of the "
              f"server, {sum(created.values())} containers created, {len(twice)} created twice, "
              f"{len(wrong)} tasks with a wrong outcome or log, {len(left)} containers left over")
        for item in list(twice.items())[:5]:
            print("  created twice:", item)
        expected = {(str(run), t, str(a)) for run in runs for t in EXPECTED for a in ([1, 2] if t == "flaky" else [1])}
        for item in sorted(expected - set(created))[:5]:
            print("  no creation seen:", item)
        for item in wrong[:5]:
            print("  wrong:", item)
        ok = not twice and not wrong and sum(created.values()) == attempts_total and not left
        if not ok:
            print(f"  server log: {gofer.log.name}")
        return 0 if ok else 1
    finally:
        if watcher.poll() is None:
            watcher.kill()
        if not args.keep:
            gofer.cleanup()


def load(args):
    gofer = Gofer(env={"GOFER_RUNS__GLOBAL_LIMIT": "20"})
    gofer.start()
    try:
        gofer.register({"id": "quick", "tasks": [task("main", "echo hi")]})
        errors, requests = [], [0]
        lock = threading.Lock()
        stop = threading.Event()

        def read():
            paths = ["/api/namespaces/default/pipelines/quick/runs?limit=50", "/api/namespaces/default/pipelines",
                     "/api/namespaces/default/pipelines/quick"]
            i = 0
            while not stop.is_set():
                path = paths[i % len(paths)]
                i += 1
                try:
                    status, body = gofer.call("GET", path, timeout=30)
                    ok = status == 200
                except OSError as e:
                    ok, status, body = False, 0, str(e).encode()
                with lock:
                    requests[0] += 1
                    if not ok:
                        errors.append((path, status, body[:200]))

        readers = [threading.Thread(target=read) for _ in range(args.readers)]
        for r in readers:
            r.start()
        began = time.time()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            starts = list(pool.map(lambda _: gofer.call("POST", "/api/namespaces/default/pipelines/quick/runs", {}),
                                   range(args.runs)))
        accepted = sum(1 for status, _ in starts if status == 201)
        start_seconds = time.time() - began
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            listed = gofer.json("GET", f"/api/namespaces/default/pipelines/quick/runs?limit={args.runs}")["runs"]
            if len(listed) == args.runs and all(r["state"] == "complete" for r in listed):
                break
            time.sleep(0.5)
        stop.set()
        for r in readers:
            r.join()
        statuses = {}
        for r in listed:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        print(f"load: {args.runs} runs started in {start_seconds:.1f}s ({accepted} accepted at once, global limit 20),"
              f" all done in {time.time() - began:.1f}s: {statuses}; {args.readers} readers made {requests[0]} "
              f"requests meanwhile, {len(errors)} errors")
        for e in errors[:5]:
            print("  error:", e)
        return 0 if not errors and accepted == args.runs and statuses.get("successful") == args.runs else 1
    finally:
        gofer.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="drill", required=True)
    k = sub.add_parser("kill9", help="kill -9 the server at random moments until every run completed")
    k.add_argument("--runs", type=int, default=40)
    k.add_argument("--seed", type=int, default=1)
    k.add_argument("--timeout", type=int, default=900)
    k.add_argument("--keep", action="store_true", help="keep the data dir for a look afterwards")
    l = sub.add_parser("load", help="many runs queued behind a low limit while readers hammer the API")
    l.add_argument("--runs", type=int, default=200)
    l.add_argument("--readers", type=int, default=100)
    l.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} is missing: build it with `cargo build -j2 -p gofer`")
    sys.exit({"kill9": kill9, "load": load}[args.drill](args))


if __name__ == "__main__":
    main()
