-- Nothing: with SQLite there is one server, whose change events stay in
-- its memory (server/events.Hub). This version keeps the two dialects in
-- step with ../postgres/00005_change_events.sql (the fleet's event log).

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
