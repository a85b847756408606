-- The live event log (issue 12): what happened, in commit order, for the SSE streams (a client
-- resumes by id) and for any reader that keeps a durable cursor. Every event is written in the
-- same transaction as the change it reports; ids come from `event_log.last_id`, so they are
-- gap-free and a reader that sees id N also sees every id below it.
CREATE TABLE events (
    event_id INTEGER PRIMARY KEY NOT NULL,
    -- NULL: about every company (knowledge.updated)
    company_id BLOB,
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- the event's JSON object, as streamed
    data TEXT NOT NULL
);
-- one company's stream, and its catch-up after a reconnect
CREATE INDEX events_company ON events (company_id, event_id);

-- The newest event id handed out; the newest one pruned (a client behind it must resync) is
-- kept apart, so that pruning never holds up the writers.
CREATE TABLE event_log (
    singleton INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    last_id INTEGER NOT NULL
);
INSERT INTO event_log (singleton, last_id) VALUES (1, 0);
CREATE TABLE event_prune (
    singleton INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    pruned_through INTEGER NOT NULL
);
INSERT INTO event_prune (singleton, pruned_through) VALUES (1, 0);
