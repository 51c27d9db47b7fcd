-- Version 3: extension switches and pipeline subscriptions.
CREATE TABLE extensions (
    id       TEXT    NOT NULL PRIMARY KEY,
    enabled  INTEGER NOT NULL,
    modified INTEGER NOT NULL
) STRICT;

CREATE TABLE subscriptions (
    namespace_id TEXT    NOT NULL,
    pipeline_id  TEXT    NOT NULL,
    extension_id TEXT    NOT NULL,
    label        TEXT    NOT NULL,
    settings     TEXT    NOT NULL,
    enabled      INTEGER NOT NULL,
    created      INTEGER NOT NULL,
    last_fired   INTEGER NOT NULL,
    PRIMARY KEY (namespace_id, pipeline_id, extension_id, label),
    FOREIGN KEY (namespace_id, pipeline_id) REFERENCES pipelines (namespace_id, pipeline_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX subscriptions_by_extension ON subscriptions (extension_id);
