-- The decision journal's clock. A decision's entry is named by its stamp: the later of the wall
-- clock and the last stamp plus one, taken here, so that the decisions of several archive
-- processes writing one index (and two decisions within one millisecond) list in one order,
-- the order they were stamped in, whatever their machines' clocks say.
CREATE TABLE journal_clock (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    at BIGINT NOT NULL
);
INSERT INTO journal_clock (id, at) VALUES (1, 0);
