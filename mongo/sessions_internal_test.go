package mongo

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/codecrafter/codecrafter"
)

// Two processes (two DB handles on one server) racing joins on one
// session: their writers do not take turns across processes, so the
// version check and the retries settle it, and every join lands.
func TestUpdateSessionRacingProcesses(t *testing.T) {
	t.Parallel()
	a, uri := newTestDB(t)
	b := openTestDB(t, uri, "test")
	s := newSession("owner")
	must(t, a.CreateSession(ctx, s))
	const perProcess = 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*perProcess)
	for p, db := range []*DB{a, b} {
		for i := range perProcess {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := db.UpdateSession(ctx, s.ID, func(x *codecrafter.Session) error {
					x.Participants = append(x.Participants, codecrafter.Participant{UserID: fmt.Sprint("p", p, "-", i), Role: codecrafter.RoleEditor, JoinedAt: x.CreatedAt})
					return nil
				})
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	got, err := b.Session(ctx, s.ID)
	must(t, err)
	if len(got.Participants) != 2*perProcess+1 {
		t.Errorf("%d participants, want %d", len(got.Participants), 2*perProcess+1)
	}
}

func TestKeyLocks(t *testing.T) {
	t.Parallel()
	var k keyLocks
	key := lockKey{id: "s"}
	unlock, err := k.lock(ctx, key)
	must(t, err)
	// A waiter whose context ends gives up with UNAVAILABLE.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = k.lock(cctx, key)
	wantCode(t, err, codecrafter.EUNAVAILABLE)
	// Another key is not held up.
	unlockOther, err := k.lock(ctx, lockKey{id: "other"})
	must(t, err)
	unlockOther()
	unlock()
	unlock, err = k.lock(ctx, key)
	must(t, err)
	unlock()
	if n := len(k.locks); n != 0 {
		t.Errorf("%d lock entries left, want none", n)
	}
}
