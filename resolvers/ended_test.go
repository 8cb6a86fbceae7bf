package resolvers

import (
	"context"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// TestEndsUnavailable: a stream closing under a live ctx (the bus ended
// it) reports UNAVAILABLE after its events; one closing because ctx ended
// reports nothing.
func TestEndsUnavailable(t *testing.T) {
	reported := make(chan error, 1)
	report := func(err error) { reported <- err }

	in := make(chan int, 2)
	in <- 1
	in <- 2
	close(in) // the bus ended it
	out, err := endsUnavailable(t.Context(), in, nil, report)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for v := range out {
		got = append(got, v)
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
	in = make(chan int)
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
