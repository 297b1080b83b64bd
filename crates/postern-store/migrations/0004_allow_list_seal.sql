-- The PROTECTED-mode allow-list, sealed with the master key (AES-256-GCM bound to the
-- datasource name): the proxies trust only what opens from here, so an entry written into
-- the store by anything but `postern apply` is ignored. NULL when the list is empty (or was
-- written before this migration: apply the datasource again to seal it).
ALTER TABLE datasources ADD COLUMN allow_list_seal BLOB;
