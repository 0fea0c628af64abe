-- Nothing: with SQLite there is one server, whose rate limits stay in its
-- memory (server/limit.Local). This version keeps the two dialects in step
-- with ../postgres/00006_rate_limits.sql (the fleet's shared counters).

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
