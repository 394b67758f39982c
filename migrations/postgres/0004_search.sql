-- Search by substring (`ILIKE '%word%'`) through an index instead of reading every row:
-- pg_trgm's trigram operator class, used by the next migration's index. pg_trgm ships
-- with PostgreSQL and is a trusted extension: the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
