-- Users that a directory (LDAP / Active Directory) or a single sign-on provider (OpenID
-- Connect) vouches for. 'local': managed by admins (a password here, or none and the
-- directory checks it); 'ldap' / 'oidc': created at their first login there, roles set from
-- their groups at every login, never a password here.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'ldap', 'oidc'));
