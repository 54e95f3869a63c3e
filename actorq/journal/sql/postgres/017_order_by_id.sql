-- Task lists and dead-letter walks go in id order: ids are UUIDv7, made from the clock
-- (model.new_id), so id order is creation order. The primary key serves an unfiltered list,
-- and tasks_state (state, id) a list by state; tasks_created is one index fewer for every
-- insert and every update of a task to write. Nodes of the previous version still list
-- correctly (they sort by created_at, without an index for it).
CREATE INDEX tasks_state ON tasks (state, id);
DROP INDEX tasks_state_created;
DROP INDEX tasks_created;
