package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// Audit pages follow commit order: an event whose (process-made) id sorts
// lower but that commits after a reader paged past a higher one is still
// on the next page — ids come from each replica's clock.
func TestAuditPagesFollowCommitOrder(t *testing.T) {
	p, _ := newStore(t, Options{})
	ctx := context.Background()
	appendEv := func(id string) {
		t.Helper()
		err := p.Update(ctx, func(tx store.Tx) error {
			return tx.AppendAudit(&store.AuditEvent{ID: id, At: time.Now().UTC(), Actor: "system", Action: "create", KeyID: "key_x"})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	list := func(after string) []string {
		t.Helper()
		var ids []string
		err := p.View(ctx, func(tx store.Tx) error {
			evs, err := tx.ListAudit(store.AuditFilter{AfterID: after, Limit: 10})
			for _, ev := range evs {
				ids = append(ids, ev.ID)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	appendEv("evt_09")              // committed first, by a replica whose clock runs ahead
	page := list("")                // a reader's page ends at it
	appendEv("evt_01")              // committed later, with a lower id
	next := list(page[len(page)-1]) // the reader's next page
	if len(next) != 1 || next[0] != "evt_01" {
		t.Errorf("page after %v = %v, want [evt_01]: the later commit was skipped", page, next)
	}
}
