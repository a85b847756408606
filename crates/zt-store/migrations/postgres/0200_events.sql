-- The live event log (issue 12; the twin of migrations/sqlite/0200_events.sql): what happened,
-- in commit order, for the SSE streams of every API process (a client resumes by id, on any
-- replica) and for any reader that keeps a durable cursor.
--
-- Every event is written in the same transaction as the change it reports, as that
-- transaction's last statement: its ids come from `UPDATE event_log SET last_id = …`, whose row
-- lock is held until the commit. So ids are handed out in commit order and gap-free, and a
-- reader that sees id N sees every id below it (a sequence would let a transaction that took
-- a lower id commit after a reader had moved past it). After the commit a NOTIFY on
-- `zerotrace_events` wakes the API processes.
CREATE TABLE events (
    event_id bigint PRIMARY KEY,
    -- NULL: about every company (knowledge.updated)
    company_id uuid,
    kind text NOT NULL,
    created_at timestamptz NOT NULL,
    -- the event's JSON object, as streamed (text: jsonb would reorder it and parse it again)
    data text NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.05);
-- one company's stream, and its catch-up after a reconnect
CREATE INDEX events_company ON events (company_id, event_id);

-- Row-level security as on the tenant tables; the streams of every company (the operator's,
-- and each API process's tail of the log) say so with `zerotrace.all_companies = on` in their
-- transaction. Writes must name the transaction's company (or none, for global events).
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY company_isolation ON events
    USING (company_id IS NULL OR company_id = zt_current_company()
           OR current_setting('zerotrace.all_companies', true) = 'on')
    WITH CHECK (company_id IS NULL OR company_id = zt_current_company());

-- The newest event id handed out; the newest one pruned (a client behind it must resync) is
-- kept apart, so that pruning never waits for the writers' row lock, nor they for it.
CREATE TABLE event_log (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id bigint NOT NULL
);
INSERT INTO event_log (singleton, last_id) VALUES (true, 0);
CREATE TABLE event_prune (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_through bigint NOT NULL
);
INSERT INTO event_prune (singleton, pruned_through) VALUES (true, 0);
