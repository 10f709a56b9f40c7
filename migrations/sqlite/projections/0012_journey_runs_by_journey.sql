-- A customer's history of a journey (re-entry rules) is read from her own runs (the index by
-- profile: a customer has few), so the index by journey, customer and key goes: its rows
-- landed at random places, and every run written cost one more page written. The reports
-- and entry caps of a journey read this index, in the order runs were written. (PostgreSQL
-- keeps its index by journey, customer and key: its planner has no hint to take the other.)
DROP INDEX journey_runs_history;
CREATE INDEX journey_runs_journey ON journey_runs (workspace_id, journey_id);
