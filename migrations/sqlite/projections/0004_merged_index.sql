-- Schema 4: the index of merged profiles holds their ids, so that reading them (a full
-- computation does, and so does every profile's family) needs no row of the table.
DROP INDEX profiles_merged_into;
CREATE INDEX profiles_merged_into ON profiles(workspace_id, merged_into, id);
