-- The operator's overview (`GET /api/v1/overview`) reads every company's agent counters in one
-- statement. Row-level security allowed only one company per transaction, so the overview was
-- one company-scoped query per company: 100 round trips at 100 companies (p95 520 ms at 10 M
-- app records). Like the event log and the notification tables, `agents` is now readable
-- across companies in a transaction that says so with `zerotrace.all_companies = on` (only the
-- operator-wide paths set it). Reading only: this policy is FOR SELECT, so an INSERT, UPDATE
-- or DELETE still needs the row's company to be the transaction's (`company_isolation`).
CREATE POLICY all_companies_read ON agents FOR SELECT
    USING (current_setting('zerotrace.all_companies', true) = 'on');
