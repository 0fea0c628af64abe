-- Leases of the periodic jobs (server/lifecycle: deletion retries, orphan
-- revocation, the bucket fallback check, upload expiry), so that with
-- several replicas on one database each job runs on one of them at a
-- time: a replica runs a job's pass only while it holds the job's lease,
-- which it renews on each pass and which another replica may take once it
-- has expired (its holder stopped or died). Keep in step with
-- ../sqlite/00007_job_leases.sql (identical).

-- +goose Up
CREATE TABLE job_leases (
    job         TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMP NOT NULL
);

-- +goose Down
DROP TABLE job_leases;
