-- Short-lived client certificates issued to people (`postern login`). A certificate is
-- accepted only while its row exists and is not revoked, so revocation is immediate and a
-- certificate this store never recorded (a restored backup, a leaked CA key) is refused.
CREATE TABLE user_certs (
    serial      TEXT PRIMARY KEY NOT NULL,
    user        TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    issued_at   TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    -- Where the request came from (audit aid).
    client_addr TEXT,
    revoked_at  TEXT,
    revoked_by  TEXT
) WITHOUT ROWID;

CREATE INDEX user_certs_user ON user_certs (user, not_after);
