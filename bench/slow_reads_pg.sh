#!/usr/bin/env bash
# The PostgreSQL twin of bench/slow_reads.py: EXPLAIN ANALYZE execution times of the statements
# behind the reads still slow at 10 M app records (issue 12), run as the server runs them: role
# zerotrace_app, the company set for row-level security (or, for the overview in one statement,
# the transaction marked operator-wide: needs migration 0950), jit off; 20 random companies.
# Connect as a superuser (it SETs ROLE). The statements are copies of what the store builds.
#   bench/slow_reads_pg.sh postgres://postgres@127.0.0.1:5432/DB [NAME...]
#   NAME: summary sla trends overview_loop overview_one epss1 epss2 epss2_fenced
url=$1; shift
names=${*:-"summary sla trends overview_loop overview_one epss1 epss2 epss2_fenced"}
companies=$(psql -X -A -t "$url" -c "SELECT company_id FROM companies ORDER BY random() LIMIT 20")
stale=$(date -u -d '-3 hours' '+%Y-%m-%d %H:%M:%S+00')
since=$(date -u -d '-29 days' '+%Y-%m-%d')
ex() { # company sql -> ms
  psql -X -A -t "$url" <<SQL | sed -n 's/^Execution Time: \(.*\) ms/\1/p'
BEGIN; SET LOCAL jit = off; SET LOCAL ROLE zerotrace_app; SET LOCAL zerotrace.company_id = '$1';
EXPLAIN (ANALYZE, TIMING OFF) $2;
COMMIT;
SQL
}
stats() { sort -n | awk -v n="$1" '{a[NR]=$1} END {printf "%-48s n %3d  p50 %8.1f ms  p95 %8.1f ms\n", n, NR, a[int((NR+1)/2)], a[int(NR*0.95+0.5)]}'; }
per_company() { # name template(@C@)
  for c in $companies; do ex "$c" "${2//@C@/$c}"; done | stats "$1"
}
SUMMARY="SELECT count(*) FILTER (WHERE decommissioned_at IS NULL), coalesce(sum(app_count), 0)::bigint, coalesce(sum(open_critical), 0)::bigint, coalesce(sum(open_high), 0)::bigint, coalesce(sum(open_medium), 0)::bigint, coalesce(sum(open_low), 0)::bigint, coalesce(sum(open_unknown), 0)::bigint, coalesce(sum(open_kev), 0)::bigint, coalesce(sum(open_fixable), 0)::bigint FROM agents WHERE company_id = '@C@'"
COUNTS="SELECT count(*) FILTER (WHERE decommissioned_at IS NULL), coalesce(sum(app_count), 0)::bigint, coalesce(sum(open_critical), 0)::bigint, coalesce(sum(open_high), 0)::bigint, coalesce(sum(open_medium), 0)::bigint, coalesce(sum(open_low), 0)::bigint, coalesce(sum(open_unknown), 0)::bigint, coalesce(sum(open_kev), 0)::bigint, coalesce(sum(open_fixable), 0)::bigint, count(*) FILTER (WHERE seen_at < '$stale' AND decommissioned_at IS NULL)"
SLA="SELECT coalesce(sum(CASE WHEN f.suppressed = false AND f.first_seen < now() - interval '7 days' THEN 1 ELSE 0 END), 0), coalesce(sum(CASE WHEN f.suppressed = true THEN 1 ELSE 0 END), 0) FROM findings f WHERE f.company_id = '@C@' AND f.resolved_at IS NULL"
TRENDS="SELECT day, critical, high, medium, low, unknown, kev, fixable, overdue, suppressed FROM company_daily WHERE company_id = '@C@' AND day >= '$since' ORDER BY day"
FIND="SELECT f.agent_id, ag.hostname, s.name, s.version, s.ecosystem, s.source, f.vuln_id, v.aliases, v.summary, f.severity, v.cvss_version, v.cvss_vector, v.cvss_score, f.kev, v.kev_due_date, v.epss, v.epss_percentile, v.informational, sv.fixed_versions, sv.method, sv.confidence, f.first_seen, f.resolved_at, f.resolution, f.software_key, f.analysis_id, an.state, an.justification, f.suppressed, an.expires_at, coalesce(v.epss, -1.0), f.vuln_id, f.agent_id, f.software_key"
EPSS1="SELECT g.vuln_id, g.findings FROM (SELECT o.vuln_id, CAST(sum(o.findings) AS BIGINT) AS findings FROM company_vulns o WHERE o.company_id = '@C@' GROUP BY o.vuln_id) g JOIN vulns v ON v.vuln_id = g.vuln_id ORDER BY coalesce(v.epss, -1.0) DESC, g.vuln_id DESC"
for n in $names; do
  case $n in
    summary) per_company "summary counters" "$SUMMARY" ;;
    sla) per_company "one pass over open findings (SLA-like)" "$SLA" ;;
    trends) per_company "trends 30 d (company_daily)" "$TRENDS" ;;
    overview_loop)
      # the former overview: one company-scoped statement per company (execution only; the
      # round trips and SET LOCALs come on top)
      for i in 1 2 3 4 5; do
        t=0; for c in $(psql -X -A -t "$url" -c "SELECT company_id FROM companies"); do
          ms=$(ex "$c" "$COUNTS FROM agents WHERE company_id = '$c'"); t=$(echo "$t + $ms" | bc); done; echo $t
      done | stats "overview, one statement per company (sum)" ;;
    overview_one)
      for i in 1 2 3 4 5 6 7 8 9 10; do
        psql -X -A -t "$url" <<SQL | sed -n 's/^Execution Time: \(.*\) ms/\1/p'
BEGIN; SET LOCAL jit = off; SET LOCAL ROLE zerotrace_app; SET LOCAL zerotrace.all_companies = 'on';
EXPLAIN (ANALYZE, TIMING OFF) SELECT company_id, ${COUNTS#SELECT } FROM agents GROUP BY company_id;
COMMIT;
SQL
      done | stats "overview, one statement (all_companies)" ;;
    epss1) per_company "findings by EPSS: ordered vulns (rollup)" "$EPSS1" ;;
    epss2)
      for c in $companies; do
        ids=$(psql -X -A -t "$url" -c "SELECT string_agg(quote_literal(vuln_id), ',') FROM (SELECT g.vuln_id, sum(g.findings) OVER (ORDER BY coalesce(v.epss, -1.0) DESC, g.vuln_id DESC) - g.findings AS before FROM (SELECT o.vuln_id, sum(o.findings) AS findings FROM company_vulns o WHERE o.company_id = '$c' GROUP BY o.vuln_id) g JOIN vulns v ON v.vuln_id = g.vuln_id) x WHERE before < 51")
        ex "$c" "$FIND FROM findings f JOIN vulns v ON v.vuln_id = f.vuln_id JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id JOIN software s ON s.software_key = f.software_key LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id LEFT JOIN analyses an ON an.company_id = f.company_id AND an.analysis_id = f.analysis_id WHERE f.company_id = '$c' AND f.resolved_at IS NULL AND f.suppressed = false AND f.vuln_id IN ($ids) ORDER BY coalesce(v.epss, -1.0) DESC, f.vuln_id DESC, f.agent_id DESC, f.software_key DESC LIMIT 51"
      done | stats "findings by EPSS: page among the first vulns" ;;
    epss2_fenced)
      for c in $companies; do
        ids=$(psql -X -A -t "$url" -c "SELECT string_agg(quote_literal(vuln_id), ',') FROM (SELECT g.vuln_id, sum(g.findings) OVER (ORDER BY coalesce(v.epss, -1.0) DESC, g.vuln_id DESC) - g.findings AS before FROM (SELECT o.vuln_id, sum(o.findings) AS findings FROM company_vulns o WHERE o.company_id = '$c' GROUP BY o.vuln_id) g JOIN vulns v ON v.vuln_id = g.vuln_id) x WHERE before < 51")
        ex "$c" "$FIND FROM (SELECT * FROM findings fv WHERE fv.company_id = '$c' AND fv.resolved_at IS NULL AND fv.severity IN (0, 1, 2, 3, 4, 5) AND fv.vuln_id IN ($ids) OFFSET 0) f JOIN vulns v ON v.vuln_id = f.vuln_id JOIN agents ag ON ag.company_id = f.company_id AND ag.agent_id = f.agent_id JOIN software s ON s.software_key = f.software_key LEFT JOIN software_vulns sv ON sv.software_key = f.software_key AND sv.vuln_id = f.vuln_id LEFT JOIN analyses an ON an.company_id = f.company_id AND an.analysis_id = f.analysis_id WHERE f.company_id = '$c' AND ag.company_id = '$c' AND f.resolved_at IS NULL AND f.suppressed = false AND f.vuln_id IN ($ids) ORDER BY coalesce(v.epss, -1.0) DESC, f.vuln_id DESC, f.agent_id DESC, f.software_key DESC LIMIT 51"
      done | stats "findings by EPSS: page, findings read first" ;;
  esac
done
