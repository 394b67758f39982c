-- When an item was last edited (NULL: never since it was added): what a cache validator
-- and a reader of the backups need. Additive, as every migration is: a shop that does not
-- know this column keeps working on the table (see README, "Backups and rollback"), and
-- adding a nullable column is instant on a table of any size.
ALTER TABLE items ADD COLUMN updated_at TIMESTAMPTZ;
