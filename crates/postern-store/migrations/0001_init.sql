-- Postern's store, version 1.
-- Resources are keyed by name (names are immutable; renaming is delete + create).
-- Timestamps are UTC RFC 3339 with microseconds ("2024-05-01T12:00:00.000000Z"), which
-- sort lexically.

CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    -- argon2id PHC string; NULL until a password is set.
    password_hash TEXT,
    -- SCRAM-SHA-256 verifier in PostgreSQL's text form; NULL until a password is set.
    scram         TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE roles (
    name        TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- Sorted, comma-separated permission names ("admin,audit-read").
    permissions TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE user_roles (
    user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    role TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    PRIMARY KEY (user, role)
) WITHOUT ROWID;
CREATE INDEX user_roles_role ON user_roles (role);

CREATE TABLE datasources (
    name       TEXT PRIMARY KEY NOT NULL,
    type       TEXT NOT NULL,
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    database   TEXT NOT NULL,
    tls        TEXT NOT NULL,
    tls_ca     TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE credentials (
    name       TEXT PRIMARY KEY NOT NULL,
    datasource TEXT NOT NULL REFERENCES datasources (name) ON DELETE RESTRICT,
    username   TEXT NOT NULL,
    -- MasterKey::seal("credential:<name>", password): never the clear password.
    password   BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX credentials_datasource ON credentials (datasource);

CREATE TABLE role_credentials (
    role       TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    credential TEXT NOT NULL REFERENCES credentials (name) ON DELETE CASCADE,
    PRIMARY KEY (role, credential)
) WITHOUT ROWID;
CREATE INDEX role_credentials_credential ON role_credentials (credential);

CREATE TABLE api_tokens (
    -- Hex SHA-256 of the whole token ("pst_..."); the token itself is never stored.
    token_sha256 TEXT PRIMARY KEY NOT NULL,
    user         TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX api_tokens_user ON api_tokens (user);
CREATE INDEX api_tokens_expires ON api_tokens (expires_at);

CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY NOT NULL,
    ts         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    user       TEXT,
    datasource TEXT,
    session    TEXT,
    -- The full event as JSON (what the hash chain covers).
    json       TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_events_user_ts ON audit_events (user, ts);
CREATE INDEX audit_events_datasource_ts ON audit_events (datasource, ts);
CREATE INDEX audit_events_kind_ts ON audit_events (kind, ts);
CREATE INDEX audit_events_ts ON audit_events (ts);
