-- Recordings of interactive SSH channels (asciicast v2 files in the data directory).
CREATE TABLE ssh_recordings (
    -- "<session id>-<channel number>".
    id          TEXT PRIMARY KEY NOT NULL,
    session     TEXT NOT NULL,
    user        TEXT NOT NULL,
    login       TEXT NOT NULL,
    remote_user TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    -- 'shell' or 'exec' (a command run with a terminal).
    kind        TEXT NOT NULL,
    command     TEXT,
    started_at  TEXT NOT NULL,
    -- NULL while the channel is open.
    ended_at    TEXT,
    -- The file's path on the server.
    file        TEXT NOT NULL,
    -- Size and SHA-256 (hex) of the finished file; the same hash is in the channel's
    -- ssh_channel audit event, so the hash chain vouches for the file.
    bytes       INTEGER,
    sha256      TEXT
) WITHOUT ROWID;
CREATE INDEX ssh_recordings_started ON ssh_recordings (started_at);
CREATE INDEX ssh_recordings_user ON ssh_recordings (user, started_at);
