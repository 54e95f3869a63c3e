-- A queue's retry policy (JSON: backoff, base, factor, cap, jitter), taken by its tasks
-- submitted without one of their own, over their type's and the node's. NULL: none.
ALTER TABLE queues ADD COLUMN retry TEXT;
