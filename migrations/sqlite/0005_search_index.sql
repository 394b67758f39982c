-- Fill the search index with the items there are (on a big table this is the slow step:
-- about a minute for a million items; the file is locked for writing meanwhile).
INSERT INTO items_search (items_search) VALUES ('rebuild');
