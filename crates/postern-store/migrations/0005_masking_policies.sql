-- Data masking (A4): masking policies, and the policies and rules roles grant or reveal.

CREATE TABLE masking_policies (
    name        TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- Higher wins when several policies a user holds cover the same column.
    priority    INTEGER NOT NULL DEFAULT 0,
    -- JSON array of {"name", "on": "ds.db.schema.table.column", "function", "allow_filter"},
    -- in the order the admin wrote them (checked by apply; `on` and `function` trimmed).
    rules       TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) WITHOUT ROWID;

-- JSON array of the masking policy names the role grants, sorted, no repeats (apply checks
-- that each exists; deleting a policy a role still names is refused).
ALTER TABLE roles ADD COLUMN masking TEXT NOT NULL DEFAULT '[]';
-- JSON array of "policy/rule": masking rules the role's members are exempt from (REVEAL),
-- sorted, no repeats; checked like `masking`.
ALTER TABLE roles ADD COLUMN reveal TEXT NOT NULL DEFAULT '[]';
