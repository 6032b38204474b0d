-- Audit pages follow commit order, not id order: ids are made by each
-- process (and its clock) before commit, so a concurrent writer or a
-- replica with a slower clock could commit a lower id after a reader paged
-- past it. seq is assigned while holding a transaction-scoped advisory
-- lock that is kept until commit (AppendAudit), so it increases in commit
-- order.
ALTER TABLE audit_events ADD COLUMN seq bigserial;
CREATE UNIQUE INDEX audit_events_seq_idx ON audit_events (seq);
