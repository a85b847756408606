#!/usr/bin/env python3
"""Multiplies a store's fleet for read benchmarks: every company present is copied N-1 times,
with its agents, apps, findings, reports and maintained counts (company software, the
vulnerability rollup, trend points), straight in the database.

The companies copied come from a real run of the pipeline (bench/run.sh: loadgen's catalog of
real package names and versions, matched by the server against the shared OSV data), so the
copies carry real software and real vulnerability ids in the distribution ingest produced; only
the ingest itself is skipped (10 M app records through the pipeline take ~5 minutes on SQLite,
the copy about one). Agent ids repeat across copies of a company (keys lead with the company
id); the copies have no credentials: read them with the operator token.

    bench/clone_fleet.py --sqlite DATA_DIR/zerotrace.db --copies 10
    bench/clone_fleet.py --postgres postgres://postgres@127.0.0.1:5432/zt_bench_1 --copies 10

Run it while no server has the store open. PostgreSQL: connect as a superuser or the tables'
owner (row-level security is bypassed for the copy); the tables are analyzed afterwards.
"""

import argparse
import os
import sqlite3
import subprocess
import sys
import time

# Tenant tables copied, each with every stored column; company_id is replaced.
TABLES = [
    "agents",
    "apps",
    "findings",
    "reports",
    "company_software",
    "company_vulns",
    "company_daily",
]


def new_company_id(template: bytes) -> bytes:
    # Time-ordered like the original (its UUIDv7 time prefix), the rest random.
    rest = bytearray(os.urandom(10))
    rest[0] = 0x70 | (rest[0] & 0x0F)  # version 7
    rest[2] = 0x80 | (rest[2] & 0x3F)  # variant
    return template[:6] + bytes(rest)


def sqlite_columns(db, table):
    # table_xinfo: hidden 0 are stored columns (2 and 3 are generated ones).
    return [r[1] for r in db.execute(f"PRAGMA table_xinfo({table})") if r[6] == 0]


def clone_sqlite(path, copies):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    templates = db.execute("SELECT company_id, name, created_at FROM companies").fetchall()
    # A table the store's schema does not have yet (an older store) is left out: its
    # migration fills it from the copied rows.
    columns = {t: c for t in TABLES if (c := sqlite_columns(db, t))}
    for k in range(1, copies):
        started = time.time()
        db.execute("BEGIN")
        for company_id, name, created_at in templates:
            new = new_company_id(company_id)
            db.execute(
                "INSERT INTO companies (company_id, name, created_at) VALUES (?, ?, ?)",
                (new, f"{name}-copy{k}", created_at),
            )
            for t, cols in columns.items():
                select = ", ".join("?" if c == "company_id" else c for c in cols)
                db.execute(
                    f"INSERT INTO {t} ({', '.join(cols)}) SELECT {select} FROM {t} "
                    "WHERE company_id = ?",
                    (new, company_id),
                )
        db.execute("COMMIT")
        print(f"copy {k}: {len(templates)} companies in {time.time() - started:.1f} s", file=sys.stderr)
    db.close()


def psql(url, sql):
    out = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url],
        input=sql,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"psql failed: {out.stderr}")
    return out.stdout


def clone_postgres(url, copies):
    templates = [
        line.split("|")
        for line in psql(url, "SELECT company_id, name FROM companies;").splitlines()
        if line
    ]
    columns = {}
    for t in TABLES:
        cols = psql(
            url,
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
            f"AND table_name = '{t}' AND is_generated = 'NEVER' ORDER BY ordinal_position;",
        ).split()
        if cols:
            columns[t] = cols
    for k in range(1, copies):
        started = time.time()
        sql = ["BEGIN;"]
        for company_id, name in templates:
            template = bytes.fromhex(company_id.replace("-", ""))
            new = new_company_id(template).hex()
            new = f"{new[:8]}-{new[8:12]}-{new[12:16]}-{new[16:20]}-{new[20:]}"
            sql.append(
                "INSERT INTO companies (company_id, name, created_at) "
                f"SELECT '{new}', name || '-copy{k}', created_at FROM companies "
                f"WHERE company_id = '{company_id}';"
            )
            for t, cols in columns.items():
                select = ", ".join(f"'{new}'::uuid" if c == "company_id" else c for c in cols)
                sql.append(
                    f"INSERT INTO {t} ({', '.join(cols)}) SELECT {select} FROM {t} "
                    f"WHERE company_id = '{company_id}';"
                )
        sql.append("COMMIT;")
        psql(url, "\n".join(sql))
        print(f"copy {k}: {len(templates)} companies in {time.time() - started:.1f} s", file=sys.stderr)
    started = time.time()
    psql(url, "ANALYZE;")
    print(f"analyzed in {time.time() - started:.1f} s", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--sqlite", help="the SQLite database file (DATA_DIR/zerotrace.db)")
    g.add_argument("--postgres", help="the PostgreSQL database URL")
    p.add_argument("--copies", type=int, required=True, help="companies after = before × COPIES")
    args = p.parse_args()
    if args.copies < 1:
        sys.exit("--copies must be at least 1")
    if args.sqlite:
        clone_sqlite(args.sqlite, args.copies)
    else:
        clone_postgres(args.postgres, args.copies)


if __name__ == "__main__":
    main()
