#!/usr/bin/env python3
"""Times the statements behind the dashboard's slowest reads on a SQLite store, as the store
ran them before the vulnerability rollup (migration 0900) and as it runs them now, directly
against the database file (no server): p50/p95 over companies in turn. The store must carry
migration 0900 (`company_vulns`). Used for the issue 12 read-performance note; the statements
are copies of what `common/views.rs` builds, so keep them in step when those change.

    python3 bench/rollup_reads.py DATA_DIR/zerotrace.db [NAME-FILTER] [SAMPLES]
"""
import sqlite3, sys, time, statistics
db = sqlite3.connect(sys.argv[1])
companies = [r[0] for r in db.execute("SELECT company_id FROM companies")]
FIND = """SELECT f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, s.source, f.vuln_id, v.aliases, v.summary, f.severity, v.cvss_version, v.cvss_vector, v.cvss_score, f.kev, v.kev_due_date, v.epss, v.epss_percentile, v.informational, sv.fixed_versions, sv.method, sv.confidence, f.first_seen, f.resolved_at, f.resolution, f.software_key, f.analysis_id, an.state, an.justification, f.suppressed, an.expires_at"""
TAIL = """ JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id JOIN software s ON s.software_key = f.software_key LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id LEFT JOIN analyses an ON an.company_id = f.company_id AND an.analysis_id = f.analysis_id"""
VROW = "SELECT t.vuln_id, t.aliases, t.summary, t.severity, t.cvss_version, t.cvss_vector, t.cvss_score, t.kev, t.kev_due_date, t.epss, t.epss_percentile, t.informational, t.hosts, t.findings FROM (SELECT g.vuln_id, v.aliases, v.summary, g.severity, v.cvss_version, v.cvss_vector, v.cvss_score, (CASE WHEN v.vuln_id IS NULL THEN g.kev WHEN v.kev THEN 1 ELSE 0 END) AS kev, v.kev_due_date, v.epss, v.epss_percentile, v.informational, g.hosts, g.findings FROM "
OLD_G = "(SELECT o.vuln_id, max(o.severity) AS severity, max(o.kev) AS kev, CAST(sum(o.hosts) AS BIGINT) AS hosts, CAST(sum(o.findings) AS BIGINT) AS findings FROM (SELECT f.severity, f.vuln_id, max(CASE WHEN f.kev THEN 1 ELSE 0 END) AS kev, count(DISTINCT f.agent_id) AS hosts, count(*) AS findings FROM findings f WHERE f.company_id = :c AND f.resolved_at IS NULL GROUP BY f.severity, f.vuln_id) o GROUP BY o.vuln_id) g"
NEW_G = "(SELECT o.vuln_id, max(o.severity) AS severity, max(CASE WHEN o.kev > 0 THEN 1 ELSE 0 END) AS kev, CAST(sum(o.hosts) AS BIGINT) AS hosts, CAST(sum(o.findings) AS BIGINT) AS findings FROM company_vulns o WHERE o.company_id = :c GROUP BY o.vuln_id) g"
VEND = " LEFT JOIN vulns v ON v.vuln_id = g.vuln_id) t WHERE true ORDER BY {o} DESC, t.vuln_id DESC LIMIT 51"
OPEN = " WHERE f.company_id = :c AND f.resolved_at IS NULL AND f.suppressed = 0"
def agent(c): return db.execute("SELECT agent_id FROM agents WHERE company_id=? LIMIT 1 OFFSET 500", (c,)).fetchone()[0]
def vuln(c): return db.execute("SELECT vuln_id FROM company_vulns WHERE company_id=? ORDER BY hosts DESC LIMIT 1", (c,)).fetchone()[0]
def new_epss(c):
    vulns = db.execute("SELECT g.vuln_id, g.findings FROM (SELECT o.vuln_id, CAST(sum(o.findings) AS BIGINT) AS findings FROM company_vulns o WHERE o.company_id = ? GROUP BY o.vuln_id) g JOIN vulns v ON v.vuln_id = g.vuln_id ORDER BY coalesce(v.epss, -1.0) DESC, g.vuln_id DESC", (c,)).fetchall()
    s=0; n=0
    for i,(v,k) in enumerate(vulns):
        s+=k; n=i+1
        if s>=51: break
    ids=[v for v,_ in vulns[:n]]
    q = FIND + " FROM findings f INDEXED BY findings_vuln JOIN vulns v ON v.vuln_id = f.vuln_id" + TAIL + OPEN + " AND f.vuln_id IN (%s) ORDER BY coalesce(v.epss, -1.0) DESC, f.vuln_id DESC, f.agent_id DESC, f.software_key DESC LIMIT 51" % ",".join("?"*len(ids))
    return db.execute(q, [c]+ids).fetchall() if False else db.execute(q.replace(":c","?"), [c]+ids).fetchall()
cases = {
 "vulnerabilities page (old: findings)": lambda c: db.execute(VROW + OLD_G + VEND.format(o="t.severity"), {"c": c}).fetchall(),
 "vulnerabilities page (new: rollup)": lambda c: db.execute(VROW + NEW_G + VEND.format(o="t.severity"), {"c": c}).fetchall(),
 "vulnerabilities by hosts (old)": lambda c: db.execute(VROW + OLD_G + VEND.format(o="t.hosts"), {"c": c}).fetchall(),
 "vulnerabilities by hosts (new)": lambda c: db.execute(VROW + NEW_G + VEND.format(o="t.hosts"), {"c": c}).fetchall(),
 "vulnerability counts (old)": lambda c: db.execute("SELECT count(DISTINCT f.agent_id), count(*) FROM findings f INDEXED BY findings_open WHERE f.company_id = ? AND f.resolved_at IS NULL AND f.severity IN (0, 1, 2, 3, 4, 5) AND f.vuln_id = ?", (c, vuln(c))).fetchall(),
 "vulnerability counts (new)": lambda c: db.execute("SELECT CAST(coalesce(sum(r.hosts), 0) AS BIGINT), CAST(coalesce(sum(r.findings), 0) AS BIGINT) FROM company_vulns r WHERE r.company_id = ? AND r.vuln_id = ?", (c, vuln(c))).fetchall(),
 "findings by EPSS (old: every vuln)": lambda c: db.execute(FIND + " FROM vulns v CROSS JOIN findings f INDEXED BY findings_vuln ON f.vuln_id = v.vuln_id" + TAIL + OPEN + " ORDER BY coalesce(v.epss, -1.0) DESC, f.vuln_id DESC, f.agent_id DESC, f.software_key DESC LIMIT 51", {"c": c}).fetchall(),
 "findings by EPSS (new: company's vulns, 2 statements)": new_epss,
 "host findings (old)": lambda c: db.execute(FIND + " FROM findings f" + TAIL + " LEFT JOIN vulns v ON v.vuln_id = f.vuln_id" + OPEN + " AND f.agent_id = :a ORDER BY f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT 51", {"c": c, "a": agent(c)}).fetchall(),
 "host findings (new: +)": lambda c: db.execute(FIND + " FROM findings f" + TAIL + " LEFT JOIN vulns v ON v.vuln_id = f.vuln_id" + OPEN + " AND f.agent_id = :a ORDER BY +f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT 51", {"c": c, "a": agent(c)}).fetchall(),
}

QOLD = " AND (f.software_key IN (SELECT cs.software_key FROM company_software cs JOIN software s ON s.software_key = cs.software_key WHERE cs.company_id = :c AND s.name LIKE :p ESCAPE '\\') OR f.vuln_id IN (SELECT v.vuln_id FROM vulns v WHERE v.vuln_id LIKE :p ESCAPE '\\' OR EXISTS (SELECT 1 FROM json_each(v.aliases) al WHERE al.value LIKE :p ESCAPE '\\')) OR f.agent_id IN (SELECT a.agent_id FROM agents a WHERE a.company_id = :c AND a.hostname LIKE :p ESCAPE '\\'))"
QNEW = " AND (f.software_key IN (SELECT cs.software_key FROM company_software cs JOIN software s ON s.software_key = cs.software_key WHERE cs.company_id = :c AND s.name LIKE :p ESCAPE '\\') OR f.vuln_id IN (SELECT v.vuln_id FROM company_vulns cv JOIN vulns v ON v.vuln_id = cv.vuln_id WHERE cv.company_id = :c AND (v.vuln_id LIKE :p ESCAPE '\\' OR EXISTS (SELECT 1 FROM json_each(v.aliases) al WHERE al.value LIKE :p ESCAPE '\\'))) OR f.agent_id IN (SELECT a.agent_id FROM agents a WHERE a.company_id = :c AND a.hostname LIKE :p ESCAPE '\\'))"
ORD = " ORDER BY f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT 51"
cases["findings q=openssl (old)"] = lambda c: db.execute(FIND + " FROM findings f" + TAIL + " LEFT JOIN vulns v ON v.vuln_id = f.vuln_id" + OPEN + QOLD + ORD, {"c": c, "p": "%openssl%"}).fetchall()
cases["findings q=openssl (new)"] = lambda c: db.execute(FIND + " FROM findings f" + TAIL + " LEFT JOIN vulns v ON v.vuln_id = f.vuln_id" + OPEN + QNEW + ORD, {"c": c, "p": "%openssl%"}).fetchall()
only = sys.argv[2] if len(sys.argv) > 2 else ""
for name, fn in cases.items():
    if only and only not in name: continue
    ts=[]
    for i in range(int(sys.argv[3]) if len(sys.argv)>3 else 12):
        c = companies[i % len(companies)]
        t=time.perf_counter(); rows=fn(c); ts.append((time.perf_counter()-t)*1000)
    ts.sort()
    p95 = ts[min(len(ts)-1, int(round(0.95*(len(ts)-1))))]
    print(f"{name:55s} rows {len(rows):3d}  p50 {statistics.median(ts):8.1f} ms  p95 {p95:8.1f} ms")
