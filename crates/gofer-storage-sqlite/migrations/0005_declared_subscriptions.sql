-- Version 5: subscriptions declared in a pipeline's code, reconciled when a config is deployed.
ALTER TABLE subscriptions ADD COLUMN declared INTEGER NOT NULL DEFAULT 0;
