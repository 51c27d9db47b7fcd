-- Gofer's PostgreSQL schema, version 1: the SQLite schema's final state (crates/gofer-storage-sqlite/migrations),
-- in PostgreSQL's types. Migrations are append-only: never edit a released file, add a new one.
-- Times are epoch milliseconds (BIGINT); JSON documents are stored as the text the API writes (TEXT), passed
-- through rather than re-encoded; secrets are sealed bytes (BYTEA). Identifiers sort bytewise (COLLATE "C"), as in
-- SQLite, whatever the database's own collation.
CREATE TABLE namespaces (
    id          TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL,
    created     BIGINT NOT NULL,
    modified    BIGINT NOT NULL
);

CREATE TABLE pipelines (
    namespace_id       TEXT COLLATE "C"   NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    pipeline_id        TEXT COLLATE "C"   NOT NULL,
    name               TEXT   NOT NULL,
    description        TEXT,
    state              TEXT   NOT NULL,
    live_version       BIGINT,
    latest_version     BIGINT NOT NULL,
    last_run_id        BIGINT NOT NULL DEFAULT 0,
    created            BIGINT NOT NULL,
    modified           BIGINT NOT NULL,
    running_deployment BIGINT,
    last_deployment_id BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace_id, pipeline_id)
);
CREATE INDEX pipelines_by_created ON pipelines (namespace_id, created);

CREATE TABLE pipeline_configs (
    namespace_id TEXT COLLATE "C"   NOT NULL,
    pipeline_id  TEXT COLLATE "C"   NOT NULL,
    version      BIGINT NOT NULL,
    state        TEXT   NOT NULL,
    hash         TEXT   NOT NULL,
    registered   BIGINT NOT NULL,
    config       TEXT   NOT NULL,
    PRIMARY KEY (namespace_id, pipeline_id, version),
    FOREIGN KEY (namespace_id, pipeline_id) REFERENCES pipelines (namespace_id, pipeline_id) ON DELETE CASCADE
);

CREATE TABLE runs (
    namespace_id     TEXT COLLATE "C"   NOT NULL,
    pipeline_id      TEXT COLLATE "C"   NOT NULL,
    run_id           BIGINT NOT NULL,
    version          BIGINT NOT NULL,
    state            TEXT   NOT NULL,
    status           TEXT   NOT NULL,
    status_reason    TEXT,
    created          BIGINT NOT NULL,
    started          BIGINT NOT NULL,
    ended            BIGINT NOT NULL,
    initiator        TEXT   NOT NULL,
    variables        TEXT   NOT NULL,
    deployment_id    BIGINT,
    deployment_stage BIGINT,
    routing          TEXT,
    PRIMARY KEY (namespace_id, pipeline_id, run_id),
    FOREIGN KEY (namespace_id, pipeline_id) REFERENCES pipelines (namespace_id, pipeline_id) ON DELETE CASCADE
);
CREATE INDEX runs_unfinished ON runs (created) WHERE state <> 'complete';
CREATE INDEX runs_by_deployment ON runs (namespace_id, pipeline_id, deployment_id) WHERE deployment_id IS NOT NULL;

CREATE TABLE task_executions (
    namespace_id  TEXT COLLATE "C"    NOT NULL,
    pipeline_id   TEXT COLLATE "C"    NOT NULL,
    run_id        BIGINT  NOT NULL,
    task_id       TEXT COLLATE "C"    NOT NULL,
    created       BIGINT  NOT NULL,
    started       BIGINT  NOT NULL,
    ended         BIGINT  NOT NULL,
    state         TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    status_reason TEXT,
    exit_code     BIGINT,
    image_digest  TEXT,
    container_id  TEXT,
    variables     TEXT    NOT NULL,
    task          TEXT    NOT NULL,
    attempt       BIGINT  NOT NULL DEFAULT 1,
    attempts      TEXT    NOT NULL DEFAULT '[]',
    logs_expired  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (namespace_id, pipeline_id, run_id, task_id),
    FOREIGN KEY (namespace_id, pipeline_id, run_id) REFERENCES runs (namespace_id, pipeline_id, run_id)
        ON DELETE CASCADE
);

CREATE TABLE system (
    key   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

-- Event ids come from one counter row, taken as a transaction's last write and held until it commits: ids grow by
-- one in commit order across every server (a sequence would leave gaps on rollback and commit out of order), so a
-- follower that sees id n+2 after n knows it missed one.
CREATE TABLE event_counter (
    id   BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    last BIGINT NOT NULL
);
INSERT INTO event_counter (id, last) VALUES (1, 0);

CREATE TABLE events (
    id           BIGINT NOT NULL PRIMARY KEY,
    emitted      BIGINT NOT NULL,
    namespace_id TEXT,
    pipeline_id  TEXT,
    run_id       BIGINT,
    kind         TEXT   NOT NULL
);
CREATE INDEX events_by_run ON events (namespace_id, pipeline_id, run_id, id);
CREATE INDEX events_by_emitted ON events (emitted);

CREATE TABLE extensions (
    id       TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    enabled  BOOLEAN NOT NULL,
    modified BIGINT  NOT NULL
);

CREATE TABLE subscriptions (
    namespace_id TEXT COLLATE "C"    NOT NULL,
    pipeline_id  TEXT COLLATE "C"    NOT NULL,
    extension_id TEXT COLLATE "C"    NOT NULL,
    label        TEXT COLLATE "C"    NOT NULL,
    settings     TEXT    NOT NULL,
    enabled      BOOLEAN NOT NULL,
    created      BIGINT  NOT NULL,
    last_fired   BIGINT  NOT NULL,
    declared     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (namespace_id, pipeline_id, extension_id, label),
    FOREIGN KEY (namespace_id, pipeline_id) REFERENCES pipelines (namespace_id, pipeline_id) ON DELETE CASCADE
);
CREATE INDEX subscriptions_by_extension ON subscriptions (extension_id);

CREATE TABLE extension_registrations (
    id            TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    image         TEXT   NOT NULL,
    settings      TEXT   NOT NULL,
    registry_auth TEXT,
    created       BIGINT NOT NULL
);

CREATE TABLE roles (
    id          TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL,
    permissions TEXT    NOT NULL,
    system_role BOOLEAN NOT NULL
);

-- `user` is a reserved word in PostgreSQL: the holder of a token is `holder` here.
CREATE TABLE tokens (
    id       TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    hash     TEXT    NOT NULL UNIQUE,
    holder   TEXT COLLATE "C"    NOT NULL,
    roles    TEXT    NOT NULL,
    created  BIGINT  NOT NULL,
    expires  BIGINT  NOT NULL,
    disabled BOOLEAN NOT NULL,
    metadata TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX tokens_by_holder ON tokens (holder);

CREATE TABLE pipeline_secrets (
    namespace_id TEXT COLLATE "C"   NOT NULL,
    pipeline_id  TEXT COLLATE "C"   NOT NULL,
    key          TEXT COLLATE "C"   NOT NULL,
    sealed       BYTEA  NOT NULL,
    created      BIGINT NOT NULL,
    modified     BIGINT NOT NULL,
    PRIMARY KEY (namespace_id, pipeline_id, key),
    FOREIGN KEY (namespace_id, pipeline_id) REFERENCES pipelines (namespace_id, pipeline_id) ON DELETE CASCADE
);

CREATE TABLE global_secrets (
    key        TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    sealed     BYTEA  NOT NULL,
    namespaces TEXT   NOT NULL,
    created    BIGINT NOT NULL,
    modified   BIGINT NOT NULL
);

CREATE TABLE secret_key_check (
    id     BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    sealed BYTEA  NOT NULL
);

CREATE TABLE cancel_requests (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace_id TEXT COLLATE "C"   NOT NULL,
    pipeline_id  TEXT COLLATE "C"   NOT NULL,
    run_id       BIGINT NOT NULL,
    task_id      TEXT,
    reason       TEXT   NOT NULL,
    requested    BIGINT NOT NULL,
    FOREIGN KEY (namespace_id, pipeline_id, run_id) REFERENCES runs (namespace_id, pipeline_id, run_id)
        ON DELETE CASCADE
);
CREATE INDEX cancel_requests_run ON cancel_requests (namespace_id, pipeline_id, run_id);

CREATE TABLE deployments (
    namespace_id  TEXT COLLATE "C"   NOT NULL,
    pipeline_id   TEXT COLLATE "C"   NOT NULL,
    deployment_id BIGINT NOT NULL,
    from_version  BIGINT,
    to_version    BIGINT NOT NULL,
    strategy      TEXT   NOT NULL,
    state         TEXT   NOT NULL,
    reason        TEXT   NOT NULL,
    started       BIGINT NOT NULL,
    ended         BIGINT NOT NULL,
    stage         BIGINT NOT NULL,
    stage_started BIGINT NOT NULL,
    initiator     TEXT   NOT NULL,
    timeline      TEXT   NOT NULL,
    PRIMARY KEY (namespace_id, pipeline_id, deployment_id),
    FOREIGN KEY (namespace_id, pipeline_id) REFERENCES pipelines (namespace_id, pipeline_id) ON DELETE CASCADE
);
CREATE INDEX deployments_running ON deployments (started) WHERE state = 'running';
