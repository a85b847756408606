-- Overdue findings per severity in each trend point (issue 13: how far behind the SLA each
-- severity was on each day), beside the total `overdue`; the twin of
-- migrations/sqlite/0930_trend_overdue_by_severity.sql. Points recorded before keep 0. (A
-- constant default: no table rewrite; on Citus the ALTER reaches every shard.)
ALTER TABLE company_daily
    ADD COLUMN overdue_critical bigint NOT NULL DEFAULT 0,
    ADD COLUMN overdue_high bigint NOT NULL DEFAULT 0,
    ADD COLUMN overdue_medium bigint NOT NULL DEFAULT 0,
    ADD COLUMN overdue_low bigint NOT NULL DEFAULT 0,
    ADD COLUMN overdue_unknown bigint NOT NULL DEFAULT 0;
