-- Second factor, admin locks and token scopes (issue: identity and second factor).

-- An admin lock (`postern user lock`): refused like a disabled user, but kept apart from
-- `disabled` so a declarative `postern apply` does not lift it.
ALTER TABLE users ADD COLUMN locked INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1));

CREATE TABLE user_totp (
    user         TEXT PRIMARY KEY NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    -- MasterKey::seal("totp:<user>", secret) of the confirmed factor; NULL until confirmed.
    secret       BLOB,
    -- A new secret waiting for its first code (enrolment in progress).
    pending      BLOB,
    -- The last TOTP step accepted: a code is never accepted twice.
    last_step    INTEGER NOT NULL DEFAULT 0,
    confirmed_at TEXT,
    updated_at   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE user_recovery_codes (
    user      TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    -- SHA-256 (hex) of the normalised code; each works once.
    code_hash TEXT NOT NULL,
    PRIMARY KEY (user, code_hash)
) WITHOUT ROWID;

-- 'full', or 'enroll' for a token that may only enrol a second factor.
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'full';
