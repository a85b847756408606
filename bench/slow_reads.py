#!/usr/bin/env python3
"""Times the statements behind the reads that were still slow at 10 M app records (issue 12:
summary, trends, the operator's overview, findings by hostname) on a SQLite store, without a
server: p50/p95 over companies in turn. Needs `apsw` (pip install apsw: it bundles a recent
SQLite, 3.54 at the time; Python's own sqlite3 module may be much older and plan differently
from the SQLite the server bundles, 3.51: with 3.40 the hostname statement was fast before
the fix too). The statements are copies of what `sqlite/reads.rs` and `common/views.rs` build.

    python3 bench/slow_reads.py DATA_DIR/zerotrace.db [SAMPLES] [NAME...]
    NAME: summary trends sla overview host_old host_new
"""
import apsw, sys, time, random
db = apsw.Connection(sys.argv[1], flags=apsw.SQLITE_OPEN_READONLY)
samples = int(sys.argv[2]) if len(sys.argv) > 2 else 40  # per statement
companies = [r[0] for r in db.execute("SELECT company_id FROM companies")]
random.seed(7)
now = int(time.time()*1000)
SUMMARY = "SELECT count(*) - count(decommissioned_at), coalesce(sum(app_count), 0), coalesce(sum(open_critical), 0), coalesce(sum(open_high), 0), coalesce(sum(open_medium), 0), coalesce(sum(open_low), 0), coalesce(sum(open_unknown), 0), coalesce(sum(open_kev), 0), coalesce(sum(open_fixable), 0) FROM agents WHERE company_id = ?1"
OVERVIEW = "SELECT company_id, count(*) - count(decommissioned_at), coalesce(sum(app_count), 0), coalesce(sum(open_critical), 0), coalesce(sum(open_high), 0), coalesce(sum(open_medium), 0), coalesce(sum(open_low), 0), coalesce(sum(open_unknown), 0), coalesce(sum(open_kev), 0), coalesce(sum(open_fixable), 0), coalesce(sum(coalesce(last_seen_at, enrolled_at) < ?1 AND decommissioned_at IS NULL), 0) FROM agents INDEXED BY agents_counts GROUP BY company_id"
TRENDS = "SELECT day, critical, high, medium, low, unknown, kev, fixable, overdue, suppressed FROM company_daily WHERE company_id = ?1 AND day >= ?2 ORDER BY day"
SLA_LIKE = "SELECT coalesce(sum(CASE WHEN f.suppressed = 0 AND f.first_seen < ?2 THEN 1 ELSE 0 END), 0), coalesce(sum(CASE WHEN f.suppressed = 1 THEN 1 ELSE 0 END), 0) FROM findings f WHERE f.company_id = ?1 AND f.resolved_at IS NULL"
HOST = "SELECT f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, s.source, f.vuln_id, v.aliases, v.summary, f.severity, v.cvss_version, v.cvss_vector, v.cvss_score, f.kev, v.kev_due_date, v.epss, v.epss_percentile, v.informational, sv.fixed_versions, sv.method, sv.confidence, f.first_seen, f.resolved_at, f.resolution, f.software_key, f.analysis_id, an.state, an.justification, f.suppressed, an.expires_at, ag.hostname, f.agent_id, f.software_key, f.vuln_id FROM agents ag CROSS JOIN findings f ON f.company_id = ag.company_id AND f.agent_id = ag.agent_id JOIN software s ON s.software_key = f.software_key LEFT JOIN vulns v ON v.vuln_id = f.vuln_id LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id LEFT JOIN analyses an ON an.company_id = f.company_id AND an.analysis_id = f.analysis_id WHERE f.company_id = ?1 AND ag.company_id = ?1 AND f.resolved_at IS NULL AND f.suppressed = 0 ORDER BY ag.hostname ASC, f.agent_id ASC, f.software_key ASC, f.vuln_id ASC LIMIT 51"
HOST_OLD = HOST
HOST_NEW = HOST.replace("FROM agents ag CROSS JOIN", "FROM agents ag INDEXED BY agents_hostname CROSS JOIN")
day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 29*86400))
def run(name, sql, args):
    ts = []
    for i in range(samples):
        c = companies[i % len(companies)]
        a = args(c)
        t = time.perf_counter(); list(db.execute(sql, a)); ts.append((time.perf_counter()-t)*1000)
    ts.sort()
    print(f"{name:48s} n {len(ts)}  p50 {ts[len(ts)//2]:8.1f} ms  p95 {ts[int(len(ts)*0.95)-1]:8.1f} ms", flush=True)
names = sys.argv[3:] or ["summary", "trends", "sla", "overview", "host_old", "host_new"]
for n in names:
    if n == "summary": run("summary counters (agents_counts)", SUMMARY, lambda c: (c,))
    if n == "trends": run("trends 30 d (company_daily)", TRENDS, lambda c: (c, day))
    if n == "sla": run("one pass over open findings (SLA-like)", SLA_LIKE, lambda c: (c, now - 7*86400000))
    if n == "overview": run("operator overview (one statement)", OVERVIEW, lambda c: (now - 3*3600000,))
    if n == "host_old": run("findings by hostname, before", HOST_OLD, lambda c: (c,))
    if n == "host_new": run("findings by hostname, INDEXED BY agents_hostname", HOST_NEW, lambda c: (c,))
