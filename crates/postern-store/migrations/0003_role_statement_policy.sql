-- Statement-level policy: privilege rules and passthrough modes per datasource on roles;
-- firewall rules and the PROTECTED-mode allow-list on datasources.

-- JSON array of {"allow"|"deny": [privilege names], "on": "ds.db.schema.object"}, in the
-- order the admin wrote them (checked by apply).
ALTER TABLE roles ADD COLUMN privileges TEXT NOT NULL DEFAULT '[]';
-- JSON object {"<datasource alias>": "passthrough" | "masked" | "protected"}.
ALTER TABLE roles ADD COLUMN modes TEXT NOT NULL DEFAULT '{}';

-- JSON array of firewall rules, in order (checked by apply).
ALTER TABLE datasources ADD COLUMN firewall TEXT NOT NULL DEFAULT '[]';
-- JSON array of statement texts PROTECTED mode lets through unanalysed.
ALTER TABLE datasources ADD COLUMN allow_list TEXT NOT NULL DEFAULT '[]';
