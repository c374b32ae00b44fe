-- +goose Up
-- The run worker's queries look only at the runs waiting for delivery (the
-- claim: due first, oldest first) and at those being delivered (leases run
-- out). Partial indexes hold just these few rows, however many finished
-- runs the table keeps, so the claim reads the next due runs from the
-- index in order instead of sorting every due run. The queries spell the
-- statuses out as literals so that the planner can use them.
CREATE INDEX runs_waiting ON runs(next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX runs_leased ON runs(locked_until) WHERE status = 'delivering';

-- +goose Down
DROP INDEX runs_leased;
DROP INDEX runs_waiting;
