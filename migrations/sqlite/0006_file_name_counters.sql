-- The last number given to a file-name stem in dir_received (`P-1-OPEN.json` is 1, `P-1-OPEN.2.json`
-- is 2, …), so a new variant's name costs one lookup however many the problem's state already has.
-- Only stems that needed a number are kept here; a stem without a row starts from its plain name.
CREATE TABLE file_name_counters (
    stem TEXT    PRIMARY KEY,
    last INTEGER NOT NULL
) WITHOUT ROWID;
