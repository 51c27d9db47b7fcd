-- Version 2: task attempts (retries), log retention, server-wide settings and the event log.
ALTER TABLE task_executions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE task_executions ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE task_executions ADD COLUMN logs_expired INTEGER NOT NULL DEFAULT 0;

CREATE TABLE system (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    emitted      INTEGER NOT NULL,
    namespace_id TEXT,
    pipeline_id  TEXT,
    run_id       INTEGER,
    kind         TEXT    NOT NULL
) STRICT;
CREATE INDEX events_by_run ON events (namespace_id, pipeline_id, run_id, id);
CREATE INDEX events_by_emitted ON events (emitted);
