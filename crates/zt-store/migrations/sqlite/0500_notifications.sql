-- Notifications (issue 14; DESIGN.md "Notifications"; the twin of
-- migrations/postgres/0500_notifications.sql).
--
-- A rule says which events of a company go where. `notification_keys` remembers what each rule
-- was told about (an event with its subject: a vulnerability, a report, an agent's silence), so
-- that one vulnerability on many hosts is one message, however many transactions open it. The
-- outbox holds the messages, written in the same transaction as the change that causes them;
-- dispatchers claim them with a lease and log every attempt in `notification_deliveries`.

CREATE TABLE notification_rules (
    company_id BLOB NOT NULL,
    rule_id BLOB NOT NULL,
    name TEXT NOT NULL,
    -- JSON list of event names
    events TEXT NOT NULL,
    -- critical | high | medium | low | none | unknown; NULL: any
    min_severity TEXT,
    kev_only INTEGER NOT NULL,
    -- JSON list: only hosts carrying one of these tags (empty: every host)
    tags TEXT NOT NULL,
    digest_minutes INTEGER NOT NULL,
    -- agent.stale: days without a report
    stale_days INTEGER NOT NULL,
    dest_kind TEXT NOT NULL,
    dest_url TEXT,
    -- JSON list of e-mail recipients
    dest_to TEXT NOT NULL,
    -- AES-GCM sealed with the server's notification key (zt-notify::seal); never returned
    secret_sealed TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (company_id, rule_id)
) WITHOUT ROWID;

CREATE TABLE notification_keys (
    rule_id BLOB NOT NULL,
    key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (rule_id, key)
) WITHOUT ROWID;

CREATE TABLE notification_outbox (
    outbox_id INTEGER PRIMARY KEY,
    -- the id receivers de-duplicate by: the same on every attempt
    delivery_id BLOB NOT NULL,
    company_id BLOB NOT NULL,
    rule_id BLOB NOT NULL,
    event TEXT NOT NULL,
    -- what merges into a pending message: the subject's key, or `digest:<event>`
    group_key TEXT NOT NULL,
    -- the message's data (JSON object)
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- pending: when it may be sent (digest end, retry); leased: when the lease expires
    due_at INTEGER NOT NULL,
    -- pending | leased | sent | dead
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    last_error TEXT,
    finished_at INTEGER
);
-- the dispatchers' claim: due messages, oldest first
CREATE INDEX notification_outbox_due ON notification_outbox (due_at)
    WHERE state IN ('pending', 'leased');
-- messages still open to merging (never attempted)
CREATE INDEX notification_outbox_open ON notification_outbox (rule_id, group_key)
    WHERE state = 'pending' AND attempts = 0;
-- retention of finished messages
CREATE INDEX notification_outbox_finished ON notification_outbox (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE notification_deliveries (
    seq INTEGER PRIMARY KEY,
    company_id BLOB NOT NULL,
    rule_id BLOB NOT NULL,
    -- NULL for a test message
    outbox_id INTEGER,
    delivery_id BLOB NOT NULL,
    event TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL,
    -- sent | retry | dead | test_sent | test_failed
    outcome TEXT NOT NULL,
    status INTEGER,
    -- at most 512 bytes of the receiver's answer
    response_excerpt TEXT,
    error TEXT,
    next_attempt_at INTEGER,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX notification_deliveries_company ON notification_deliveries (company_id, seq);
CREATE INDEX notification_deliveries_rule ON notification_deliveries (company_id, rule_id, seq);
