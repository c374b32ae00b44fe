-- +goose Up
-- A worker claims the runs of a flow whose endpoint is busy separately,
-- "AND flow_id = ?" (store.ClaimRunsCapped). With only runs_waiting, on
-- PostgreSQL, the planner, its statistics stale while a backlog fills the
-- table, combined runs_waiting with the index on (flow_id, message_id,
-- seq) and so read every run the flow ever had (22,000 index entries, 3 ms
-- a claim, near the end of the bench's 10,000-message backlog). This index
-- holds the waiting runs of each flow in the order they are due.
CREATE INDEX runs_waiting_flow ON runs(flow_id, next_attempt_at) WHERE status IN ('pending', 'retrying');

-- +goose Down
DROP INDEX runs_waiting_flow;
