-- Statement-level policy of roles: privilege rules and passthrough modes per datasource.

-- JSON array of {"allow"|"deny": [privilege names], "on": "ds.db.schema.object"}, in the
-- order the admin wrote them (checked by apply).
ALTER TABLE roles ADD COLUMN privileges TEXT NOT NULL DEFAULT '[]';
-- JSON object {"<datasource alias>": "passthrough" | "masked" | "protected"}.
ALTER TABLE roles ADD COLUMN modes TEXT NOT NULL DEFAULT '{}';
