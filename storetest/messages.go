package storetest

import (
	"fmt"
	"testing"

	"github.com/codecrafter/codecrafter"
)

// TestMessages runs the MessageStore conformance suite.
func TestMessages(t *testing.T, newStore func(t *testing.T) codecrafter.MessageStore) {
	t.Run("SeqFromOneInOrder", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		sid := codecrafter.NewID()
		// More than a page or two of any paged layout.
		const n = 70
		for i := range n {
			m := &codecrafter.Message{SessionID: sid, UserID: "u1", Body: fmt.Sprint("m", i+1), CreatedAt: now()}
			noErr(t, s.AppendMessage(t.Context(), m))
			if m.Seq != i+1 || m.ID != codecrafter.MessageID(sid, i+1) {
				t.Fatalf("message %d: seq %d id %q", i+1, m.Seq, m.ID)
			}
		}
		all, err := s.Messages(t.Context(), sid, 0, 100)
		noErr(t, err)
		if len(all) != n {
			t.Fatalf("%d messages, want %d", len(all), n)
		}
		for i, m := range all {
			if m.Seq != i+1 || m.Body != fmt.Sprint("m", i+1) || m.SessionID != sid || m.UserID != "u1" {
				t.Fatalf("message %d: %+v", i+1, m)
			}
		}
		// Paging: after and limit, across page boundaries.
		for _, c := range []struct{ after, limit, first, count int }{
			{0, 10, 1, 10}, {30, 5, 31, 5}, {31, 40, 32, 39}, {65, 50, 66, 5}, {70, 10, 0, 0},
		} {
			got, err := s.Messages(t.Context(), sid, c.after, c.limit)
			noErr(t, err)
			if len(got) != c.count || (c.count > 0 && got[0].Seq != c.first) {
				t.Fatalf("after %d limit %d: %d messages from %v", c.after, c.limit, len(got), got)
			}
		}
		other, err := s.Messages(t.Context(), codecrafter.NewID(), 0, 10)
		noErr(t, err)
		if len(other) != 0 {
			t.Fatalf("another session has %d messages", len(other))
		}
	})
	t.Run("BatchesInOrderAcrossPages", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		sid := codecrafter.NewID()
		var sent []*codecrafter.Message
		for _, n := range []int{5, 30, 1, 40, 3, 70} {
			batch := make([]*codecrafter.Message, n)
			for i := range batch {
				batch[i] = &codecrafter.Message{SessionID: sid, UserID: "u1", Body: fmt.Sprint("m", len(sent)+i+1), CreatedAt: now()}
			}
			noErr(t, s.AppendMessages(t.Context(), batch))
			sent = append(sent, batch...)
		}
		for i, m := range sent {
			if m.Seq != i+1 || m.ID != codecrafter.MessageID(sid, i+1) {
				t.Fatalf("message %d: seq %d id %q", i+1, m.Seq, m.ID)
			}
		}
		var all []*codecrafter.Message
		for len(all) < len(sent) {
			got, err := s.Messages(t.Context(), sid, len(all), 100)
			noErr(t, err)
			if len(got) == 0 {
				break
			}
			all = append(all, got...)
		}
		if len(all) != len(sent) {
			t.Fatalf("%d stored, want %d", len(all), len(sent))
		}
		for i, m := range all {
			if m.Seq != i+1 || m.Body != fmt.Sprint("m", i+1) {
				t.Fatalf("stored message %d is %+v", i+1, m)
			}
		}
	})
	t.Run("ConcurrentBatchesNoGapNoDuplicate", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		sid := codecrafter.NewID()
		const per = 7 // batches that straddle pages
		batches := make([][]*codecrafter.Message, racers)
		errs := race(racers, func(i int) error {
			batches[i] = make([]*codecrafter.Message, per)
			for j := range batches[i] {
				batches[i][j] = &codecrafter.Message{SessionID: sid, UserID: "u", Body: fmt.Sprint(i, "/", j), CreatedAt: now()}
			}
			return s.AppendMessages(t.Context(), batches[i])
		})
		bySeq := map[int]string{}
		for i, err := range errs {
			noErr(t, err)
			for j, m := range batches[i] {
				if j > 0 && m.Seq <= batches[i][j-1].Seq {
					t.Fatalf("batch %d out of order: %d after %d", i, m.Seq, batches[i][j-1].Seq)
				}
				if _, dup := bySeq[m.Seq]; dup {
					t.Fatalf("seq %d given twice", m.Seq)
				}
				bySeq[m.Seq] = m.Body
			}
		}
		all, err := s.Messages(t.Context(), sid, 0, 1000)
		noErr(t, err)
		if len(all) != racers*per {
			t.Fatalf("%d stored, want %d", len(all), racers*per)
		}
		for i, m := range all {
			if m.Seq != i+1 || m.Body != bySeq[m.Seq] {
				t.Fatalf("stored message %d is %+v, want body %q", i+1, m, bySeq[i+1])
			}
		}
	})
	t.Run("ConcurrentAppendsNoGapNoDuplicate", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		sid := codecrafter.NewID()
		const n = 3 * racers
		msgs := make([]*codecrafter.Message, n)
		errs := race(n, func(i int) error {
			msgs[i] = &codecrafter.Message{SessionID: sid, UserID: "u", Body: fmt.Sprint(i), CreatedAt: now()}
			return s.AppendMessage(t.Context(), msgs[i])
		})
		seqs := map[int]bool{}
		for i, err := range errs {
			noErr(t, err)
			seqs[msgs[i].Seq] = true
		}
		for seq := 1; seq <= n; seq++ {
			if !seqs[seq] {
				t.Fatalf("no message got seq %d: %v", seq, seqs)
			}
		}
		all, err := s.Messages(t.Context(), sid, 0, 100)
		noErr(t, err)
		for i, m := range all {
			if m.Seq != i+1 || m.Body != msgs[indexOfSeq(msgs, m.Seq)].Body {
				t.Fatalf("stored message %d is %+v", i+1, m)
			}
		}
		if len(all) != n {
			t.Fatalf("%d stored, want %d", len(all), n)
		}
	})
}

func indexOfSeq(msgs []*codecrafter.Message, seq int) int {
	for i, m := range msgs {
		if m.Seq == seq {
			return i
		}
	}
	return -1
}
