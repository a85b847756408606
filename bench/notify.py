#!/usr/bin/env python3
"""Notification benchmark (issue 14): prints figures, asserts nothing.

Starts `zerotrace server` on a fresh SQLite store with the shared PyPA advisories, a local
HTTP receiver (this script), creates COMPANIES companies with RULES webhook rules each
(finding.opened, to the receiver), enrolls HOSTS hosts per company and sends each one
inventory with vulnerable Python packages. Prints, for the run: reports/s from the first
report sent to the last processed (ingest + match + outbox), messages received, distinct
(rule, vulnerability) pairs among them, and how long after the last report was processed
the last message arrived. Run it with --rules 0 and with --rules 100 to compare ingest.

  python3 bench/notify.py [--bin PATH] [--companies 10] [--hosts 50] [--rules 0|100] [--digest-minutes 60]
      [--postgres ADMIN_URL]

With --postgres, a new database `zt_bench_notify_<pid>` on that server instead of SQLite
(dropped at the end).

PATH defaults to $CARGO_TARGET_DIR/release/zerotrace (build: cargo build --release -p zerotrace).
"""
import argparse, http.server, json, os, shutil, subprocess, tempfile, threading, time, urllib.request, uuid

ADMIN = "zto_bench-notify-operator-token-0123456789"
here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)

got = []
lock = threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    # Keep-alive, as real receivers (Slack, Teams, webhook endpoints) speak it: HTTP/1.0 costs a
    # connection and a Python thread per message, on the same two cores as the server.
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            got.append((time.monotonic(), self.path, self.headers.get("ZeroTrace-Delivery"), body))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


def cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def call(api, method, path, token=ADMIN, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(api + path, data=data, method=method)
    req.add_header("authorization", "Bearer " + token)
    if data:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read()
        return json.loads(text) if text else None


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/zerotrace-target")
    ap.add_argument("--bin", default=os.path.join(target, "release", "zerotrace"))
    ap.add_argument("--companies", type=int, default=10)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--rules", type=int, default=100, help="rules per company")
    ap.add_argument("--digest-minutes", type=int, default=0,
                    help="the rules' digest interval: >0 writes the outbox without sending during the run")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="one more argument for `zerotrace server` (repeat), e.g. --server-arg=--notify-defer-during-ingest-secs=0")
    ap.add_argument("--postgres", help="admin URL of a PostgreSQL server (default: SQLite)")
    a = ap.parse_args()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = "http://127.0.0.1:%d/hook" % srv.server_address[1]

    data = tempfile.mkdtemp(prefix="zt-bench-notify-")
    store = ["--data-dir", data]
    dbname = None
    if a.postgres:
        dbname = "zt_bench_notify_%d" % os.getpid()
        subprocess.run(["psql", "-q", a.postgres, "-c", "CREATE DATABASE %s" % dbname], check=True)
        store += ["--database-url", a.postgres.rsplit("/", 1)[0] + "/" + dbname]
    osv = os.path.join(root, "..", "shared", "data", "osv", "pypa", "vulns")
    subprocess.run([a.bin] + store + ["feeds", "import", osv], check=True, capture_output=True)
    env = dict(os.environ, ZEROTRACE_ADMIN_TOKEN=ADMIN, ZEROTRACE_LOG="warn")
    server = subprocess.Popen([a.bin] + store + ["server", "--listen", "127.0.0.1:0", "--allow-private-webhooks",
                               "--rate-company", "1000000", "--rate-agent", "1000000", "--rate-enroll", "0"] + a.server_arg,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    api = None
    for line in server.stdout:
        if line.startswith("listening on "):
            api = line.split()[-1]
            break
    try:
        companies = []
        for c in range(a.companies):
            co = call(api, "POST", "/api/v1/companies", body={"name": "bench-%d" % c})
            for r in range(a.rules):
                call(api, "POST", "/api/v1/companies/%s/notification-rules" % co["id"],
                     body={"name": "rule-%d" % r, "events": ["finding.opened"], "digest_minutes": a.digest_minutes,
                           "destination": {"kind": "webhook", "url": hook, "secret": "whsec_bench-secret"}})
            agents = []
            for h in range(a.hosts):
                e = call(api, "POST", "/api/v1/enroll", token="", body={
                    "enroll_secret": co["enroll_secret"], "hostname": "h%d" % h,
                    "os": {"id": "debian", "version_id": "12", "name": ""}, "arch": "x86_64", "agent_version": "bench"})
                agents.append(e["agent_token"])
            companies.append((co["id"], agents))
        start = time.monotonic()
        cpu_start = cpu_seconds(server.pid)
        reports = 0
        for cid, agents in companies:
            for i, tok in enumerate(agents):
                report = {"report_id": str(uuid.uuid4()), "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "host": {"hostname": "h%d" % i, "os": {"id": "debian", "version_id": "12", "name": ""}, "arch": "x86_64"},
                          "apps": [{"name": "django", "version": "3.2.0", "source": "pypi"},
                                   {"name": "requests", "version": "2.19.0", "source": "pypi"},
                                   {"name": "jinja2", "version": "2.10", "source": "pypi"},
                                   {"name": "pyyaml", "version": "5.1", "source": "pypi"}]}
                call(api, "POST", "/api/v1/inventory", token=tok, body=report)
                reports += 1
        # Processed: every host has its apps.
        while True:
            done = sum(1 for cid, _ in companies
                       if call(api, "GET", "/api/v1/companies/%s/summary" % cid)["apps"] >= 4 * a.hosts)
            if done == len(companies):
                break
            time.sleep(0.05)
        processed = time.monotonic()
        cpu_processed = cpu_seconds(server.pid)
        vulns = {cid: len(call(api, "GET", "/api/v1/companies/%s/vulnerabilities?limit=1000" % cid)["items"]) for cid, _ in companies}
        expected = sum(vulns.values()) * a.rules
        deadline = processed + (0 if a.digest_minutes else 120)
        while time.monotonic() < deadline:
            with lock:
                n = len(set(d for _, _, d, _ in got))
            if n >= expected:
                break
            time.sleep(0.05)
        with lock:
            ids = set(d for _, _, d, _ in got)
            last = max((t for t, _, _, _ in got), default=processed)
        cpu_end = cpu_seconds(server.pid)
        print(json.dumps({
            "backend": "postgres" if a.postgres else "sqlite", "companies": a.companies, "hosts_per_company": a.hosts, "rules_per_company": a.rules,
            "reports": reports, "ingest_reports_per_second": round(reports / (processed - start), 1),
            "vulnerabilities_per_company": sorted(set(vulns.values())),
            "messages_expected": expected, "messages_received": len(ids), "requests_received": len(got),
            "last_message_after_processed_s": round(max(0.0, last - processed), 2) if a.rules else None,
            # The server's own CPU time: steadier than wall time on a shared machine.
            "server_cpu_ms_per_report_ingest": round(1000 * (cpu_processed - cpu_start) / reports, 1),
            "server_cpu_s_until_last_message": round(cpu_end - cpu_start, 2),
        }))
    finally:
        server.terminate()
        server.wait()
        srv.shutdown()
        shutil.rmtree(data, ignore_errors=True)
        if dbname:
            subprocess.run(["psql", "-q", a.postgres, "-c", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % dbname])


if __name__ == "__main__":
    main()
