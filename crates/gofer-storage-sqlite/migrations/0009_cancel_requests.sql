-- A request to cancel a run (or one task of it), stored so that whichever server drives the run sees it, and so
-- that a cancel asked for just before a crash still holds after the restart.
CREATE TABLE cancel_requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace_id  TEXT    NOT NULL,
    pipeline_id   TEXT    NOT NULL,
    run_id        INTEGER NOT NULL,
    task_id       TEXT,
    reason        TEXT    NOT NULL,
    requested     INTEGER NOT NULL,
    FOREIGN KEY (namespace_id, pipeline_id, run_id) REFERENCES runs (namespace_id, pipeline_id, run_id)
        ON DELETE CASCADE
) STRICT;
CREATE INDEX cancel_requests_run ON cancel_requests (namespace_id, pipeline_id, run_id);
