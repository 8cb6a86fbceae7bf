package storetest

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/codecrafter/codecrafter"
)

// TestEdits runs the EditStore conformance suite.
func TestEdits(t *testing.T, newStore func(t *testing.T) codecrafter.EditStore) {
	t.Run("AppendInOrderAndLoad", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		sid := codecrafter.NewID()
		// More than a page or two of any paged layout.
		const n = 70
		want := make([]*codecrafter.Edit, n+1) // by revision
		for rev := 1; rev <= n; rev++ {
			e := testEdit(sid, rev)
			want[rev] = e
			noErr(t, appendOne(t, s, e, snapshot(rev-1)))
		}
		for _, after := range []int{0, 1, 31, 32, 33, 63, 64, 65, 69, 70, 100} {
			base, code, edits, ok, err := s.EditsSince(t.Context(), sid, after)
			noErr(t, err)
			if !ok || base < 0 || base > min(after, n) {
				t.Fatalf("after %d: base %d ok %v", after, base, ok)
			}
			if code != snapshot(base) {
				t.Fatalf("after %d: base %d with code %q, want %q", after, base, code, snapshot(base))
			}
			if len(edits) != n-base {
				t.Fatalf("after %d: base %d and %d edits, want %d", after, base, len(edits), n-base)
			}
			for i, e := range edits {
				sameEdit(t, e, want[base+i+1])
			}
		}
		// Taken revisions, and gaps.
		for _, rev := range []int{1, 2, 32, 33, 64, 70} {
			wantCode(t, appendOne(t, s, testEdit(sid, rev), "x"), codecrafter.ECONFLICT)
		}
		for _, rev := range []int{72, 96, 97, 128} {
			wantCode(t, appendOne(t, s, testEdit(sid, rev), "x"), codecrafter.ECONFLICT)
		}
		_, _, edits, _, err := s.EditsSince(t.Context(), sid, 0)
		noErr(t, err)
		if len(edits) != n {
			t.Fatalf("%d edits after the refused appends, want %d", len(edits), n)
		}
		noErr(t, appendOne(t, s, testEdit(sid, n+1), snapshot(n)))
	})
	t.Run("AppendBatches", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		sid := codecrafter.NewID()
		// Batches of 5 to 70: each call stores a prefix (at least one), the
		// rest follow; across any page boundary.
		head := 0
		var all []*codecrafter.Edit
		for _, size := range []int{5, 30, 70, 1, 9} {
			batch := make([]*codecrafter.Edit, size)
			for i := range batch {
				batch[i] = testEdit(sid, head+1+i)
			}
			all = append(all, batch...)
			wantCode(t, appendOne(t, s, testEdit(sid, head+2), "x"), codecrafter.ECONFLICT) // a gap
			for len(batch) > 0 {
				n, err := s.AppendEdits(t.Context(), batch, snapshot(batch[0].Revision-1))
				noErr(t, err)
				if n < 1 || n > len(batch) {
					t.Fatalf("stored %d of %d", n, len(batch))
				}
				if _, err := s.AppendEdits(t.Context(), batch, "x"); !codecrafter.IsCode(err, codecrafter.ECONFLICT) {
					t.Fatalf("the same batch again: %v, want CONFLICT", err)
				}
				batch, head = batch[n:], head+n
			}
		}
		base, code, edits, _, err := s.EditsSince(t.Context(), sid, 0)
		noErr(t, err)
		if base != 0 || code != snapshot(0) || len(edits) != head {
			t.Fatalf("base %d code %q, %d edits; want 0, %q, %d", base, code, len(edits), snapshot(0), head)
		}
		for i, e := range edits {
			sameEdit(t, e, all[i])
		}
		for _, after := range []int{31, 32, 33, 64, 100} {
			base, code, _, _, err := s.EditsSince(t.Context(), sid, after)
			noErr(t, err)
			if code != snapshot(base) {
				t.Fatalf("after %d: base %d with code %q", after, base, code)
			}
		}
	})
	t.Run("GapInAFreshSession", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		sid := codecrafter.NewID()
		for _, rev := range []int{2, 33, 34} {
			wantCode(t, appendOne(t, s, testEdit(sid, rev), "x"), codecrafter.ECONFLICT)
		}
		_, _, edits, ok, err := s.EditsSince(t.Context(), sid, 0)
		noErr(t, err)
		if ok || len(edits) != 0 {
			t.Fatalf("refused appends stored %d edits (ok %v)", len(edits), ok)
		}
	})
	t.Run("EmptySession", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		base, code, edits, ok, err := s.EditsSince(t.Context(), codecrafter.NewID(), 5)
		noErr(t, err)
		if ok || base != 0 || code != "" || edits != nil {
			t.Fatalf("empty session: %d %q %v %v", base, code, edits, ok)
		}
	})
	t.Run("ConcurrentAppendsOneWins", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		sid := codecrafter.NewID()
		head := 0
		// Across page boundaries: a page's first revision is an insert,
		// the others an update of it.
		for _, rev := range []int{1, 2, 3, 31, 32, 33, 34} {
			for head < rev-1 {
				head++
				noErr(t, appendOne(t, s, testEdit(sid, head), snapshot(head-1)))
			}
			tries := make([]*codecrafter.Edit, racers)
			errs := race(racers, func(i int) error {
				tries[i] = testEdit(sid, rev)
				tries[i].ClientID = fmt.Sprint("racer", i)
				return appendOne(t, s, tries[i], snapshot(rev-1))
			})
			if c := countCodes(errs); c[""] != 1 || c[codecrafter.ECONFLICT] != racers-1 {
				t.Fatalf("revision %d: %v", rev, c)
			}
			head = rev
			winner := tries[indexOfNil(errs)]
			base, code, edits, _, err := s.EditsSince(t.Context(), sid, rev-1)
			noErr(t, err)
			if code != snapshot(base) || len(edits) != rev-base {
				t.Fatalf("revision %d: base %d code %q and %d edits", rev, base, code, len(edits))
			}
			sameEdit(t, edits[len(edits)-1], winner)
		}
	})
}

// appendOne appends e alone.
func appendOne(t *testing.T, s codecrafter.EditStore, e *codecrafter.Edit, before string) error {
	n, err := s.AppendEdits(t.Context(), []*codecrafter.Edit{e}, before)
	if err == nil && n != 1 {
		t.Errorf("revision %d alone: stored %d", e.Revision, n) // (not Fatal: racers call this)
	}
	return err
}

// snapshot is the code at rev in the suite's sessions.
func snapshot(rev int) string { return fmt.Sprintf("code@%d", rev) }

func testEdit(sid string, rev int) *codecrafter.Edit {
	return &codecrafter.Edit{
		SessionID: sid, Revision: rev, UserID: fmt.Sprint("u", rev%3),
		ClientID: fmt.Sprint("c", rev%2), ClientSeq: rev * 10,
		Ops: []codecrafter.TextOp{
			{Retain: rev}, {Insert: fmt.Sprint("é", rev)}, {Delete: 1 + rev%4}, {Retain: 2},
		},
		CreatedAt: now(),
	}
}

func sameEdit(t *testing.T, got, want *codecrafter.Edit) {
	t.Helper()
	if got.SessionID != want.SessionID || got.Revision != want.Revision || got.UserID != want.UserID ||
		got.ClientID != want.ClientID || got.ClientSeq != want.ClientSeq || !reflect.DeepEqual(got.Ops, want.Ops) {
		t.Fatalf("edit %d: got %+v, want %+v", want.Revision, got, want)
	}
	sameTime(t, fmt.Sprint("edit ", want.Revision, " CreatedAt"), got.CreatedAt, want.CreatedAt)
}

func indexOfNil(errs []error) int {
	for i, err := range errs {
		if err == nil {
			return i
		}
	}
	return -1
}
