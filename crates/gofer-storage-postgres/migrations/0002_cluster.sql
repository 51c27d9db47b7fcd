-- Several servers on one database: who is alive (its heartbeat), and which server drives each run in flight.
CREATE TABLE servers (
    id        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    hostname  TEXT             NOT NULL,
    address   TEXT             NOT NULL,
    version   TEXT             NOT NULL,
    started   BIGINT           NOT NULL,
    -- When it first beat, by the database's clock: the live server that joined first leads.
    joined    BIGINT           NOT NULL,
    heartbeat BIGINT           NOT NULL
);

-- The server that claimed the run from the queue or adopted it; NULL while it waits in the queue.
ALTER TABLE runs ADD COLUMN owner TEXT COLLATE "C";
CREATE INDEX runs_in_flight_by_owner ON runs (owner) WHERE owner IS NOT NULL AND state <> 'complete';

-- Where a container extension answers, as the one server that supervises it recorded it: any server calls it there
-- (with the bearer secret, sealed with the secret key the servers share).
CREATE TABLE extension_endpoints (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY
                  REFERENCES extension_registrations (id) ON DELETE CASCADE,
    server        TEXT COLLATE "C" NOT NULL,
    base_url      TEXT             NOT NULL,
    sealed_secret BYTEA            NOT NULL,
    container_id  TEXT             NOT NULL,
    documentation TEXT             NOT NULL
);
