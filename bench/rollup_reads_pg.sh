#!/usr/bin/env bash
# The PostgreSQL twin of bench/rollup_reads.py: EXPLAIN ANALYZE execution times of the
# statements behind the slow reads, before and after the rollup (migration 0900), two samples
# per company. Connect as a superuser or the owner (row-level security is bypassed).
#   bench/rollup_reads_pg.sh postgres://postgres@127.0.0.1:5432/DB
# Execution time (EXPLAIN ANALYZE) of the slow reads' statements before/after, per company.
url=$1
companies=$(psql -X -A -t "$url" -c "SELECT company_id FROM companies")
run() { # name sql-template
  local name=$1 tpl=$2 ts=()
  for c in $companies; do
    for i in 1 2; do
      sql=${tpl//@C@/$c}
      t=$(psql -X -A -t "$url" -c "EXPLAIN (ANALYZE, TIMING OFF) $sql" | sed -n 's/^Execution Time: \(.*\) ms/\1/p')
      ts+=("$t")
    done
  done
  printf '%s\n' "${ts[@]}" | sort -n | awk -v n="$name" '{a[NR]=$1} END {printf "%-45s n %d  p50 %8.1f ms  p95 %8.1f ms\n", n, NR, a[int((NR+1)/2)], a[int(NR*0.95+0.5)]}'
}
VROW="SELECT g.vuln_id, v.aliases, v.summary, g.severity, g.hosts, g.findings, v.epss FROM"
OLD_G="(SELECT o.vuln_id, max(o.severity) AS severity, max(o.kev) AS kev, CAST(sum(o.hosts) AS BIGINT) AS hosts, CAST(sum(o.findings) AS BIGINT) AS findings FROM (SELECT f.severity, f.vuln_id, max(CASE WHEN f.kev THEN 1 ELSE 0 END) AS kev, count(DISTINCT f.agent_id) AS hosts, count(*) AS findings FROM findings f WHERE f.company_id = '@C@' AND f.resolved_at IS NULL GROUP BY f.severity, f.vuln_id) o GROUP BY o.vuln_id) g"
NEW_G="(SELECT o.vuln_id, max(o.severity) AS severity, max(CASE WHEN o.kev > 0 THEN 1 ELSE 0 END) AS kev, CAST(sum(o.hosts) AS BIGINT) AS hosts, CAST(sum(o.findings) AS BIGINT) AS findings FROM company_vulns o WHERE o.company_id = '@C@' GROUP BY o.vuln_id) g"
VEND="LEFT JOIN vulns v ON v.vuln_id = g.vuln_id ORDER BY g.hosts DESC, g.vuln_id DESC LIMIT 51"
run "vulnerabilities by hosts (old: findings)" "$VROW $OLD_G $VEND"
run "vulnerabilities by hosts (new: rollup)" "$VROW $NEW_G $VEND"
FIND="SELECT f.agent_id, ag.hostname, s.name, s.version, f.vuln_id, v.aliases, v.summary, f.severity, v.epss, sv.fixed_versions, an.state"
TAIL="JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id JOIN software s ON s.software_key = f.software_key LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id LEFT JOIN analyses an ON an.company_id = f.company_id AND an.analysis_id = f.analysis_id WHERE f.company_id = '@C@' AND f.resolved_at IS NULL AND NOT f.suppressed"
run "findings by EPSS (old: every vuln)" "$FIND FROM vulns v JOIN findings f ON f.vuln_id = v.vuln_id $TAIL ORDER BY coalesce(v.epss, -1.0) DESC, f.vuln_id DESC, f.agent_id DESC, f.software_key DESC LIMIT 51"
run "findings by EPSS (new: step 1, ordered vulns)" "SELECT g.vuln_id, g.findings FROM (SELECT o.vuln_id, CAST(sum(o.findings) AS BIGINT) AS findings FROM company_vulns o WHERE o.company_id = '@C@' GROUP BY o.vuln_id) g JOIN vulns v ON v.vuln_id = g.vuln_id ORDER BY coalesce(v.epss, -1.0) DESC, g.vuln_id DESC"
run "findings by EPSS (new: step 2, first vulns)" "$FIND FROM findings f JOIN vulns v ON v.vuln_id = f.vuln_id $TAIL AND f.vuln_id IN (SELECT g.vuln_id FROM (SELECT o.vuln_id FROM company_vulns o WHERE o.company_id = '@C@' GROUP BY o.vuln_id) g JOIN vulns v ON v.vuln_id = g.vuln_id ORDER BY coalesce(v.epss, -1.0) DESC, g.vuln_id DESC LIMIT 1) ORDER BY coalesce(v.epss, -1.0) DESC, f.vuln_id DESC, f.agent_id DESC, f.software_key DESC LIMIT 51"
run "vulnerability counts (old: findings)" "SELECT count(DISTINCT f.agent_id), count(*) FROM findings f WHERE f.company_id = '@C@' AND f.resolved_at IS NULL AND f.severity IN (0,1,2,3,4,5) AND f.vuln_id = (SELECT vuln_id FROM company_vulns WHERE company_id = '@C@' ORDER BY hosts DESC LIMIT 1)"
run "vulnerability counts (new: rollup)" "SELECT sum(hosts), sum(findings) FROM company_vulns WHERE company_id = '@C@' AND vuln_id = (SELECT vuln_id FROM company_vulns WHERE company_id = '@C@' ORDER BY hosts DESC LIMIT 1)"
run "host findings (agent_id=, severity order)" "$FIND FROM findings f LEFT JOIN vulns v ON v.vuln_id = f.vuln_id $TAIL AND f.agent_id = (SELECT agent_id FROM agents WHERE company_id = '@C@' ORDER BY agent_id OFFSET 500 LIMIT 1) ORDER BY f.severity DESC, f.vuln_id, f.agent_id, f.software_key LIMIT 51"
