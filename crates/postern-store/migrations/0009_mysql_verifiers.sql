-- What the MySQL front door needs to check a person's password (the double SHA-1 and
-- SHA-256 hashes of mysql_native_password and caching_sha2_password), sealed with the master
-- key. Derived whenever a password is set; NULL for passwords set before, until set again.
ALTER TABLE users ADD COLUMN mysql_verifier BLOB;
