-- SSH (issue: SSH proxy with recording): target logins, their grants, people's keys.

CREATE TABLE ssh_logins (
    name            TEXT PRIMARY KEY NOT NULL,
    host            TEXT NOT NULL,
    port            INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    -- Account on the target.
    user            TEXT NOT NULL,
    -- 'generated-key' | 'imported-key' | 'password'.
    auth            TEXT NOT NULL,
    -- MasterKey::seal("ssh-login:<name>", OpenSSH private key or password).
    secret          BLOB NOT NULL,
    -- The public half of the key (NULL for a password).
    public_key      TEXT,
    -- The pinned host key, "algorithm base64"; NULL until the first connection when
    -- not configured.
    host_key        TEXT,
    -- 'configured' | 'first-use' (NULL while nothing is pinned).
    host_key_source TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE role_ssh_logins (
    role  TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    login TEXT NOT NULL REFERENCES ssh_logins (name) ON DELETE CASCADE,
    PRIMARY KEY (role, login)
) WITHOUT ROWID;
CREATE INDEX role_ssh_logins_login ON role_ssh_logins (login);

-- JSON object of the role's SSH session options (forwarding kinds, limits); the logins are
-- in role_ssh_logins.
ALTER TABLE roles ADD COLUMN ssh TEXT NOT NULL DEFAULT '{}';

CREATE TABLE user_ssh_keys (
    -- "SHA256:…": one key belongs to one person.
    fingerprint TEXT PRIMARY KEY NOT NULL,
    user        TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    algorithm   TEXT NOT NULL,
    -- "algorithm base64" (no comment).
    key         TEXT NOT NULL,
    comment     TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX user_ssh_keys_user ON user_ssh_keys (user);
