-- Gofer schema, version 1. Migrations are append-only: never edit a released file, add a new one.
CREATE TABLE namespaces (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    created     INTEGER NOT NULL,
    modified    INTEGER NOT NULL
) STRICT;

CREATE TABLE pipelines (
    namespace_id   TEXT    NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    pipeline_id    TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    description    TEXT,
    state          TEXT    NOT NULL,
    live_version   INTEGER,
    latest_version INTEGER NOT NULL,
    last_run_id    INTEGER NOT NULL DEFAULT 0,
    created        INTEGER NOT NULL,
    modified       INTEGER NOT NULL,
    PRIMARY KEY (namespace_id, pipeline_id)
) STRICT;
CREATE INDEX pipelines_by_created ON pipelines (namespace_id, created);

CREATE TABLE pipeline_configs (
    namespace_id TEXT    NOT NULL,
    pipeline_id  TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    registered   INTEGER NOT NULL,
    config       TEXT    NOT NULL,
    PRIMARY KEY (namespace_id, pipeline_id, version),
    FOREIGN KEY (namespace_id, pipeline_id) REFERENCES pipelines (namespace_id, pipeline_id) ON DELETE CASCADE
) STRICT;

CREATE TABLE runs (
    namespace_id  TEXT    NOT NULL,
    pipeline_id   TEXT    NOT NULL,
    run_id        INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    status_reason TEXT,
    created       INTEGER NOT NULL,
    started       INTEGER NOT NULL,
    ended         INTEGER NOT NULL,
    initiator     TEXT    NOT NULL,
    variables     TEXT    NOT NULL,
    PRIMARY KEY (namespace_id, pipeline_id, run_id),
    FOREIGN KEY (namespace_id, pipeline_id) REFERENCES pipelines (namespace_id, pipeline_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX runs_unfinished ON runs (created) WHERE state != 'complete';

CREATE TABLE task_executions (
    namespace_id  TEXT    NOT NULL,
    pipeline_id   TEXT    NOT NULL,
    run_id        INTEGER NOT NULL,
    task_id       TEXT    NOT NULL,
    created       INTEGER NOT NULL,
    started       INTEGER NOT NULL,
    ended         INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    status_reason TEXT,
    exit_code     INTEGER,
    image_digest  TEXT,
    container_id  TEXT,
    variables     TEXT    NOT NULL,
    task          TEXT    NOT NULL,
    PRIMARY KEY (namespace_id, pipeline_id, run_id, task_id),
    FOREIGN KEY (namespace_id, pipeline_id, run_id) REFERENCES runs (namespace_id, pipeline_id, run_id)
        ON DELETE CASCADE
) STRICT;
