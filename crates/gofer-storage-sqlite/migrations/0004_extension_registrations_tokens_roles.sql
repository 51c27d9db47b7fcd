-- Version 4: installed container extensions, roles and API tokens (only the hash of a token's secret).
CREATE TABLE extension_registrations (
    id            TEXT    NOT NULL PRIMARY KEY,
    image         TEXT    NOT NULL,
    settings      TEXT    NOT NULL,
    registry_auth TEXT,
    created       INTEGER NOT NULL
) STRICT;

CREATE TABLE roles (
    id          TEXT    NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL,
    permissions TEXT    NOT NULL,
    system_role INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
    id       TEXT    NOT NULL PRIMARY KEY,
    hash     TEXT    NOT NULL UNIQUE,
    user     TEXT    NOT NULL,
    roles    TEXT    NOT NULL,
    created  INTEGER NOT NULL,
    expires  INTEGER NOT NULL,
    disabled INTEGER NOT NULL
) STRICT;
CREATE INDEX tokens_by_user ON tokens (user);
