#!/usr/bin/env python3
"""Notification benchmark of a feed import (issue 14): prints figures, asserts nothing.

A feed import opens findings on many companies' hosts at once; every company has one rule
(finding.opened, at once, a signed webhook to a local receiver this script runs). The bench:

1. makes a fresh store (SQLite in a temporary data directory, or with --postgres ADMIN_URL a
   new database `zt_bench_notify_<pid>`, dropped at the end) and imports the shared PyPA
   advisories into it (matching does real work);
2. starts `zerotrace server` (--allow-private-webhooks, limits off), creates COMPANIES
   companies with one rule each, enrolls HOSTS hosts per company through the API and sends
   each one inventory with VULNS Python packages `ztbench-pkg-<i>` 1.0.0 that no advisory
   names yet (so nothing is vulnerable), and waits until every report is processed;
3. listens to the operator's event stream (`GET /api/v1/events`), writes VULNS OSV advisories
   (one per package, affected below 2.0.0, CVSS 9.8) and runs `zerotrace feeds import` on them
   as a separate process against the same store, as an operator would: the running server
   notices the knowledge revision (--knowledge-poll-secs), re-matches, and its reconcile
   opens COMPANIES x HOSTS x VULNS findings, writing the outbox in the same transactions;
4. waits until COMPANIES x VULNS distinct deliveries have arrived (or --wait seconds).

"Findings stored" is when the server announces the revision with `knowledge.updated` on the
event stream: it appends that event after the reconcile's last transaction committed (every
finding and its outbox rows are stored then). Printed (seconds on this script's clock):
`import_s` (the `feeds import` process), `import_end_to_knowledge_updated_s` (poll + re-match +
reconcile), `knowledge_updated_to_last_delivery_s` (the target: <= 10 s), `import_end_to_last_
delivery_s`, the messages received, distinct delivery ids, the most messages (distinct
delivery ids) of one (rule, vulnerability) (the target: 1), requests (retries included) and
the open findings the companies' summaries count.

  python3 bench/notify_import.py [--bin PATH] [--postgres ADMIN_URL] [--companies 100]
      [--hosts 100] [--vulns 10] [--server-arg ARG]...

PATH defaults to $CARGO_TARGET_DIR/release/zerotrace.
"""
import argparse, concurrent.futures, http.server, json, os, subprocess, tempfile, threading, time
import urllib.request, uuid, shutil

ADMIN = "zto_bench-notify-operator-token-0123456789"
here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)

got = []
lock = threading.Lock()
events = []


class Receiver(http.server.BaseHTTPRequestHandler):
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


def call(api, method, path, token=ADMIN, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(api + path, data=data, method=method)
    req.add_header("authorization", "Bearer " + token)
    if data:
        req.add_header("content-type", "application/json")
    for attempt in range(20):
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                text = r.read()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            if e.code in (429, 503) and attempt < 19:
                time.sleep(float(e.headers.get("retry-after") or 1))
                continue
            raise


def listen(api):
    """The operator's event stream: arrival times of the events by name."""
    req = urllib.request.Request(api + "/api/v1/events")
    req.add_header("authorization", "Bearer " + ADMIN)
    req.add_header("accept", "text/event-stream")
    with urllib.request.urlopen(req, timeout=3600) as r:
        name = None
        for raw in r:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name:
                with lock:
                    events.append((time.monotonic(), name, line[5:].strip()))
            elif not line:
                name = None


def advisory(i):
    return {
        "schema_version": "1.6.0",
        "id": "ZTBENCH-2026-%05d" % i,
        "modified": "2026-12-07T00:00:00Z",
        "published": "2026-12-07T00:00:00Z",
        "summary": "bench advisory %d" % i,
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{"package": {"ecosystem": "PyPI", "name": "ztbench-pkg-%d" % i},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}]}],
    }


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/zerotrace-target")
    ap.add_argument("--bin", default=os.path.join(target, "release", "zerotrace"))
    ap.add_argument("--postgres", help="admin URL of a PostgreSQL server (default: SQLite)")
    ap.add_argument("--companies", type=int, default=100)
    ap.add_argument("--hosts", type=int, default=100, help="hosts per company")
    ap.add_argument("--vulns", type=int, default=10, help="advisories the import adds (each on every host)")
    ap.add_argument("--threads", type=int, default=8, help="concurrent enrollments and reports")
    ap.add_argument("--wait", type=float, default=300, help="seconds to wait for the messages after the import")
    ap.add_argument("--no-pypa", action="store_true", help="skip importing the shared PyPA advisories first")
    ap.add_argument("--server-arg", action="append", default=[], help="one more argument for `zerotrace server`")
    a = ap.parse_args()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = "http://127.0.0.1:%d/hook" % srv.server_address[1]

    data = tempfile.mkdtemp(prefix="zt-bench-notify-import-")
    store = ["--data-dir", data]
    dbname = None
    if a.postgres:
        dbname = "zt_bench_notify_%d" % os.getpid()
        subprocess.run(["psql", "-q", a.postgres, "-c", "CREATE DATABASE %s" % dbname], check=True)
        store += ["--database-url", a.postgres.rsplit("/", 1)[0] + "/" + dbname]
    server = None
    try:
        osv = os.path.join(root, "..", "shared", "data", "osv", "pypa", "vulns")
        if not a.no_pypa and os.path.isdir(osv):
            subprocess.run([a.bin] + store + ["feeds", "import", osv], check=True, capture_output=True)
        else:
            # An advisory about nothing the hosts have: the knowledge base exists.
            d = os.path.join(data, "seed")
            os.makedirs(d)
            seed = advisory(0)
            seed["id"] = "ZTBENCH-SEED"
            seed["affected"][0]["package"]["name"] = "ztbench-seed"
            with open(os.path.join(d, "seed.json"), "w") as f:
                json.dump(seed, f)
            subprocess.run([a.bin] + store + ["feeds", "import", d], check=True, capture_output=True)
        env = dict(os.environ, ZEROTRACE_ADMIN_TOKEN=ADMIN, ZEROTRACE_LOG=os.environ.get("ZEROTRACE_LOG", "warn"))
        server = subprocess.Popen([a.bin] + store + [
            "server", "--listen", "127.0.0.1:0", "--allow-private-webhooks", "--rate-company", "0",
            "--rate-agent", "0", "--rate-enroll", "0", "--rate-company-users", "0",
            "--knowledge-poll-secs", "1", "--offline"] + a.server_arg,
            stdout=subprocess.PIPE, stderr=None, env=env, text=True)
        api = None
        for line in server.stdout:
            if line.startswith("listening on "):
                api = line.split()[-1]
                break
        threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
        companies = []
        for c in range(a.companies):
            co = call(api, "POST", "/api/v1/companies", body={"name": "bench-%d" % c})
            call(api, "POST", "/api/v1/companies/%s/notification-rules" % co["id"],
                 body={"name": "opened", "events": ["finding.opened"], "digest_minutes": 0,
                       "destination": {"kind": "webhook", "url": hook + "/" + co["id"],
                                       "secret": "whsec_bench-secret"}})
            companies.append(co)
        apps = [{"name": "ztbench-pkg-%d" % i, "version": "1.0.0", "source": "pypi"} for i in range(1, a.vulns + 1)]
        apps += [{"name": "requests", "version": "2.31.0", "source": "pypi"}]

        def host(job):
            co, h = job
            os_ = {"id": "debian", "version_id": "12", "name": ""}
            e = call(api, "POST", "/api/v1/enroll", token="", body={
                "enroll_secret": co["enroll_secret"], "hostname": "h%d" % h, "os": os_,
                "arch": "x86_64", "agent_version": "bench"})
            call(api, "POST", "/api/v1/inventory", token=e["agent_token"], body={
                "report_id": str(uuid.uuid4()),
                "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "host": {"hostname": "h%d" % h, "os": os_, "arch": "x86_64"}, "apps": apps})

        t0 = time.monotonic()
        jobs = [(co, h) for co in companies for h in range(a.hosts)]
        with concurrent.futures.ThreadPoolExecutor(a.threads) as ex:
            list(ex.map(host, jobs))
        while True:
            done = sum(1 for co in companies
                       if call(api, "GET", "/api/v1/companies/%s/summary" % co["id"])["apps"] >= len(apps) * a.hosts)
            if done == len(companies):
                break
            time.sleep(0.5)
        setup_s = time.monotonic() - t0
        threading.Thread(target=listen, args=(api,), daemon=True).start()
        time.sleep(1.0)
        with lock:
            before = len(got)
        adv = os.path.join(data, "advisories")
        os.makedirs(adv)
        for i in range(1, a.vulns + 1):
            with open(os.path.join(adv, "ZTBENCH-%05d.json" % i), "w") as f:
                json.dump(advisory(i), f)
        import_start = time.monotonic()
        subprocess.run([a.bin] + store + ["feeds", "import", adv], check=True, capture_output=True)
        import_end = time.monotonic()
        expected = a.companies * a.vulns
        deadline = import_end + a.wait
        while time.monotonic() < deadline:
            with lock:
                n = len(set(d for _, _, d, _ in got[before:]))
                updated = any(name == "knowledge.updated" and t > import_start for t, name, _ in events)
            if n >= expected and updated:
                break
            time.sleep(0.05)
        time.sleep(1.0)  # late duplicates, if any, would arrive now
        with lock:
            mine = got[before:]
            updated = [t for t, name, _ in events if name == "knowledge.updated" and t > import_start]
        per_pair = {}
        for _, path, d, body in mine:
            try:
                msg = json.loads(body)
                vuln = msg["data"].get("vuln_id") or msg["data"].get("items", [{}])[0].get("vuln_id")
            except (ValueError, KeyError, IndexError, AttributeError):
                vuln = None
            per_pair.setdefault((path, vuln), set()).add(d)
        findings = 0
        for co in companies:
            s = call(api, "GET", "/api/v1/companies/%s/summary" % co["id"])
            findings += sum(s["findings"].values())
        last = max((t for t, _, _, _ in mine), default=None)
        first = min((t for t, _, _, _ in mine), default=None)
        ku = updated[0] if updated else None
        r = lambda x: None if x is None else round(x, 2)
        print(json.dumps({
            "backend": "postgres" if a.postgres else "sqlite",
            "companies": a.companies, "hosts_per_company": a.hosts, "vulns": a.vulns,
            "setup_s": r(setup_s),
            "open_findings": findings,
            "messages_expected": expected,
            "messages_received": len(set(d for _, _, d, _ in mine)),
            "requests_received": len(mine),
            "max_messages_per_rule_vuln": max((len(v) for v in per_pair.values()), default=0),
            "import_s": r(import_end - import_start),
            "import_end_to_knowledge_updated_s": r(ku - import_end) if ku else None,
            "import_end_to_first_delivery_s": r(first - import_end) if first else None,
            "knowledge_updated_to_last_delivery_s": r(last - ku) if (ku and last) else None,
            "import_end_to_last_delivery_s": r(last - import_end) if last else None,
        }))
    finally:
        if server:
            server.terminate()
            server.wait()
        srv.shutdown()
        shutil.rmtree(data, ignore_errors=True)
        if dbname:
            subprocess.run(["psql", "-q", a.postgres, "-c", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % dbname])


if __name__ == "__main__":
    main()
