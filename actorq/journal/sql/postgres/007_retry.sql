-- Each task keeps the retry policy chosen when it was submitted (JSON: backoff, base, factor,
-- cap, jitter), as its submitted event records it. NULL: a task submitted before policies
-- were recorded; its type's or the node's policy applies. Adding a nullable column without a
-- default rewrites no row.
ALTER TABLE tasks ADD COLUMN retry text;
