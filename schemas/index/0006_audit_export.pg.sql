-- How far the audit trail has been copied to the replicas (sealed batches under audit/), so a
-- lost index does not lose the trail: reindex restores it from there.
CREATE TABLE audit_export (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    last_id  BIGINT NOT NULL
);
INSERT INTO audit_export (id, last_id) VALUES (1, 0);
