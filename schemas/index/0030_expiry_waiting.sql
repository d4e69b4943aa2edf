-- A study waits in at most one expiry batch, even when two proposals run at once (two nodes,
-- or an administrator's request beside the expiry worker): an item waiting for its batch's
-- decision or its deletion is 'proposed', and only one such item per study may exist. A
-- dismissed batch's items are 'dismissed'.
UPDATE expiry_items SET outcome = 'dismissed'
 WHERE outcome = 'proposed'
   AND batch_fk IN (SELECT id FROM expiry_batches WHERE state = 'dismissed');
-- a study two proposals already share waits in the earlier batch only
UPDATE expiry_items SET outcome = 'dismissed'
 WHERE outcome = 'proposed'
   AND EXISTS (SELECT 1 FROM expiry_items o
                WHERE o.study_uid = expiry_items.study_uid
                  AND o.outcome = 'proposed'
                  AND o.batch_fk < expiry_items.batch_fk);
CREATE UNIQUE INDEX expiry_items_waiting ON expiry_items (study_uid) WHERE outcome = 'proposed';
