-- Version 8: free-form metadata on tokens (what a token is for, who asked for it).
ALTER TABLE tokens ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
