-- Overdue findings per severity in each trend point (issue 13: how far behind the SLA each
-- severity was on each day), beside the total `overdue`. Points recorded before keep 0.
ALTER TABLE company_daily ADD COLUMN overdue_critical INTEGER NOT NULL DEFAULT 0;
ALTER TABLE company_daily ADD COLUMN overdue_high INTEGER NOT NULL DEFAULT 0;
ALTER TABLE company_daily ADD COLUMN overdue_medium INTEGER NOT NULL DEFAULT 0;
ALTER TABLE company_daily ADD COLUMN overdue_low INTEGER NOT NULL DEFAULT 0;
ALTER TABLE company_daily ADD COLUMN overdue_unknown INTEGER NOT NULL DEFAULT 0;
