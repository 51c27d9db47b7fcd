-- Deployments: every change of a pipeline's live version, with its strategy, its judgement and the runs it routed.
CREATE TABLE deployments (
    namespace_id  TEXT    NOT NULL,
    pipeline_id   TEXT    NOT NULL,
    deployment_id INTEGER NOT NULL,
    from_version  INTEGER,
    to_version    INTEGER NOT NULL,
    strategy      TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    started       INTEGER NOT NULL,
    ended         INTEGER NOT NULL,
    stage         INTEGER NOT NULL,
    stage_started INTEGER NOT NULL,
    initiator     TEXT    NOT NULL,
    timeline      TEXT    NOT NULL,
    PRIMARY KEY (namespace_id, pipeline_id, deployment_id),
    FOREIGN KEY (namespace_id, pipeline_id) REFERENCES pipelines (namespace_id, pipeline_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX deployments_running ON deployments (started) WHERE state = 'running';

ALTER TABLE pipelines ADD COLUMN running_deployment INTEGER;
ALTER TABLE pipelines ADD COLUMN last_deployment_id INTEGER NOT NULL DEFAULT 0;

-- The deployment that chose a run's version: its id and stage as columns (counted), the whole routing as JSON.
ALTER TABLE runs ADD COLUMN deployment_id INTEGER;
ALTER TABLE runs ADD COLUMN deployment_stage INTEGER;
ALTER TABLE runs ADD COLUMN routing TEXT;
CREATE INDEX runs_by_deployment ON runs (namespace_id, pipeline_id, deployment_id) WHERE deployment_id IS NOT NULL;
