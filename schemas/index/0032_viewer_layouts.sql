-- A reader's own layout of the viewer for a kind of study (its modality, or modality and body
-- part): the hanging protocol the viewer applies before the archive's rules, remembered across
-- browsers and nodes. Preferences, not patient data.
CREATE TABLE viewer_layouts (
    username    TEXT NOT NULL,
    kind        TEXT NOT NULL,            -- "CT" or "CT/CHEST"
    layout      TEXT NOT NULL,            -- JSON: {"layout": "1x2", "prior": true}
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (username, kind)
);
