-- Version 6: secrets, sealed (AEAD: nonce then ciphertext and tag); the plain value is never stored.
CREATE TABLE pipeline_secrets (
    namespace_id TEXT    NOT NULL,
    pipeline_id  TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    sealed       BLOB    NOT NULL,
    created      INTEGER NOT NULL,
    modified     INTEGER NOT NULL,
    PRIMARY KEY (namespace_id, pipeline_id, key),
    FOREIGN KEY (namespace_id, pipeline_id) REFERENCES pipelines (namespace_id, pipeline_id) ON DELETE CASCADE
) STRICT;

CREATE TABLE global_secrets (
    key        TEXT    NOT NULL PRIMARY KEY,
    sealed     BLOB    NOT NULL,
    namespaces TEXT    NOT NULL,
    created    INTEGER NOT NULL,
    modified   INTEGER NOT NULL
) STRICT;

-- A known value sealed with the secret key, to tell at startup whether the configured key is the right one.
CREATE TABLE secret_key_check (
    id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    sealed BLOB    NOT NULL
) STRICT;
