// Package storetest holds conformance suites for the store interfaces of
// package codecrafter. Every implementation (mongo, redis, inmem) runs the
// suite of each interface it implements:
//
//	func TestUsers(t *testing.T) {
//		storetest.TestUsers(t, func(t *testing.T) codecrafter.UserStore { return newStore(t) })
//	}
//
// newStore must return an empty store that lives until t ends; subtests
// run in parallel, each with its own store. Times in the suites are
// whole milliseconds (what MongoDB keeps).
package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// racers is how many goroutines the concurrency tests start.
const racers = 20

// now returns the current time in whole milliseconds, UTC.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := codecrafter.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// race runs fn(i) for i in [0, n) at the same time and returns the errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			errs[i] = fn(i)
		}()
	}
	start.Done()
	done.Wait()
	return errs
}

// countCodes counts errors by code ("" for nil).
func countCodes(errs []error) map[string]int {
	m := map[string]int{}
	for _, err := range errs {
		m[codecrafter.ErrorCode(err)]++
	}
	return m
}

func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func sameTimePtr(t *testing.T, what string, got, want *time.Time) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		t.Errorf("%s = %v, want %v", what, fmtPtr(got), fmtPtr(want))
	default:
		sameTime(t, what, *got, *want)
	}
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

var errAbort = errors.New("storetest: fn refuses")
