-- Search by substring through an index instead of reading every row: an FTS5 table with
-- the trigram tokenizer (SQLite 3.34 or later) over the items' names and descriptions. It
-- keeps no copy of the text (content='items'); the triggers keep it in step with the
-- table. The next migration fills it.
CREATE VIRTUAL TABLE items_search USING fts5(
    name, description, content = 'items', content_rowid = 'id', tokenize = 'trigram'
);

CREATE TRIGGER items_search_insert AFTER INSERT ON items BEGIN
    INSERT INTO items_search (rowid, name, description) VALUES (new.id, new.name, new.description);
END;
CREATE TRIGGER items_search_delete AFTER DELETE ON items BEGIN
    INSERT INTO items_search (items_search, rowid, name, description)
        VALUES ('delete', old.id, old.name, old.description);
END;
CREATE TRIGGER items_search_update AFTER UPDATE OF name, description ON items BEGIN
    INSERT INTO items_search (items_search, rowid, name, description)
        VALUES ('delete', old.id, old.name, old.description);
    INSERT INTO items_search (rowid, name, description) VALUES (new.id, new.name, new.description);
END;

-- A counter of changes to the items, for the pages' cache validators (ETag): any write, by
-- any instance, moves it, in the same transaction as the write. (SQLite has one writer at a
-- time anyway; PostgreSQL uses its transaction snapshot instead and needs no table.)
CREATE TABLE items_changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    changes INTEGER NOT NULL
);
INSERT INTO items_changes (id, changes) VALUES (1, 0);
CREATE TRIGGER items_changes_insert AFTER INSERT ON items BEGIN
    UPDATE items_changes SET changes = changes + 1;
END;
CREATE TRIGGER items_changes_update AFTER UPDATE ON items BEGIN
    UPDATE items_changes SET changes = changes + 1;
END;
CREATE TRIGGER items_changes_delete AFTER DELETE ON items BEGIN
    UPDATE items_changes SET changes = changes + 1;
END;
