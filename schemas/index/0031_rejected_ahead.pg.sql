-- Instances a rejection note named before they arrived (IHE IOCM lets the note come first, from
-- another sender or ahead of a resend): no row to take out of the index yet, so the name alone
-- is kept, and the instance is refused when it comes, as one rejected after it was stored is.
CREATE TABLE rejected_ahead (
    sop_uid      TEXT COLLATE "C" PRIMARY KEY,
    study_uid    TEXT COLLATE "C" NOT NULL,
    note_uid     TEXT COLLATE "C" NOT NULL,    -- the rejection note's SOP Instance UID
    code         TEXT COLLATE "C" NOT NULL,    -- its title (DCM)
    rejected_at  BIGINT NOT NULL
);
