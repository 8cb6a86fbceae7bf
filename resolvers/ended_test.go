package resolvers

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/push"
)

// TestEndsUnavailable: a stream closing under a live ctx (the bus ended
// it) reports UNAVAILABLE after its events; one closing because ctx ended
// reports nothing.
func TestEndsUnavailable(t *testing.T) {
	reported := make(chan error, 1)
	report := func(err error) { reported <- err }

	one, two := 1, 2
	in := make(chan *int, 2)
	in <- &one
	in <- &two
	close(in) // the bus ended it
	out, err := endsUnavailable(t.Context(), in, nil, report)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for v := range out {
		got = append(got, *v)
	}
	if len(got) != 2 {
		t.Fatalf("got %v, want [1 2]", got)
	}
	select {
	case err := <-reported:
		if !codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) {
			t.Fatalf("reported %v, want UNAVAILABLE", err)
		}
	default: // out closes only after the report
		t.Fatal("nothing reported")
	}

	ctx, cancel := context.WithCancel(t.Context())
	in = make(chan *int)
	out, _ = endsUnavailable(ctx, in, nil, report)
	cancel()
	close(in) // as a service does once ctx ended
	select {
	case _, ok := <-out:
		if ok {
			t.Fatal("an event after ctx ended")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("out not closed")
	}
	select {
	case err := <-reported:
		t.Fatalf("reported %v after ctx ended", err)
	default:
	}

	if _, err := endsUnavailable[int](t.Context(), nil, codecrafter.Errorf(codecrafter.ENOTFOUND, "x"), report); !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		t.Fatalf("err = %v", err)
	}
}

// sink is a push.Sink that takes up to room events.
type sink struct {
	mu      sync.Mutex
	adopted bool
	room    int
	got     []any
	ended   chan struct{}
}

func (s *sink) Adopt()               { s.mu.Lock(); s.adopted = true; s.mu.Unlock() }
func (s *sink) Fail(*gqlerror.Error) {}
func (s *sink) End()                 { close(s.ended) }
func (s *sink) Deliver(key any, queue func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) == s.room {
		return false
	}
	queue()
	s.got = append(s.got, key)
	return true
}

// TestEndsUnavailableThroughPush: over a transport with a push.Sink the
// stream is delivered to it (the transport adopts it, so no goroutine of
// its own waits on the channel), and ends as without one: UNAVAILABLE
// when the bus ended it, and also when the subscriber cannot keep up.
func TestEndsUnavailableThroughPush(t *testing.T) {
	for _, tc := range []struct {
		name string
		room int
	}{{"bus ended", 10}, {"too slow", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			reported := make(chan error, 1)
			s := &sink{room: tc.room, ended: make(chan struct{})}
			one, two := 1, 2
			in := make(chan *int, 2)
			in <- &one
			in <- &two
			close(in)
			if _, err := endsUnavailable(push.With(t.Context(), s), in, nil, func(err error) { reported <- err }); err != nil {
				t.Fatal(err)
			}
			select {
			case <-s.ended:
			case <-time.After(10 * time.Second):
				t.Fatal("the subscription never ended")
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.adopted || len(s.got) != min(tc.room, 2) || *s.got[0].(*int) != 1 {
				t.Fatalf("adopted %v, delivered %v", s.adopted, s.got)
			}
			if err := <-reported; !codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) {
				t.Fatalf("reported %v, want UNAVAILABLE", err)
			}
		})
	}
}
