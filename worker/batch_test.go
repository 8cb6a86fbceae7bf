package worker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// startBatcher runs b's loop; writes arrive on the returned channel.
func startBatcher(t *testing.T, b *batcher, fail error) (writes <-chan []codecrafter.OutputChunk, stop func() error) {
	t.Helper()
	ch := make(chan []codecrafter.OutputChunk, 100)
	done := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- b.loop(done, func(c []codecrafter.OutputChunk) error {
			ch <- c
			return fail
		})
	}()
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			close(done)
		}
		return <-result
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	return ch, stop
}

func next(t *testing.T, writes <-chan []codecrafter.OutputChunk) []codecrafter.OutputChunk {
	t.Helper()
	select {
	case c := <-writes:
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("no write within 30 s")
		return nil
	}
}

func TestBatcherFirstOutputAtOnceThenBatches(t *testing.T) {
	t.Parallel()
	b := newBatcher(time.Hour, 8, 1<<20) // only the size limit can end a wait
	writes, stop := startBatcher(t, b, nil)
	b.add(codecrafter.Stdout, []byte("first"))
	if got := next(t, writes); len(got) != 1 || got[0].Data != "first" {
		t.Fatalf("first write %+v", got)
	}
	// Now paced: these wait together until 8 bytes are waiting.
	b.add(codecrafter.Stdout, []byte("ab"))
	b.add(codecrafter.Stderr, []byte("cd"))
	b.add(codecrafter.Stderr, []byte("efgh"))
	got := next(t, writes)
	want := []codecrafter.OutputChunk{
		{Stream: codecrafter.Stdout, Data: "ab", Status: codecrafter.StatusRunning},
		{Stream: codecrafter.Stderr, Data: "cdefgh", Status: codecrafter.StatusRunning},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("batch %+v, want %+v", got, want)
	}
	b.add(codecrafter.Stdout, []byte("tail"))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := next(t, writes); len(got) != 1 || got[0].Data != "tail" {
		t.Fatalf("final write %+v", got)
	}
	stdout, stderr := b.streamed()
	if stdout != "firstabtail" || stderr != "cdefgh" {
		t.Fatalf("streamed %q %q", stdout, stderr)
	}
}

func TestBatcherKeepsCharactersWhole(t *testing.T) {
	t.Parallel()
	b := newBatcher(time.Hour, 1<<20, 1<<20)
	writes, stop := startBatcher(t, b, nil)
	euro := []byte("€") // 3 bytes
	b.add(codecrafter.Stdout, []byte{'a', euro[0], euro[1]})
	if got := next(t, writes); got[0].Data != "a" {
		t.Fatalf("first write %q: a split character went out", got[0].Data)
	}
	b.add(codecrafter.Stdout, euro[2:])
	b.add(codecrafter.Stderr, []byte{0xff, euro[0]}) // invalid byte, then a cut-off character at the end
	stop()
	var all []codecrafter.OutputChunk
	for len(writes) > 0 {
		all = append(all, <-writes...)
	}
	if len(all) != 2 || all[0].Data != "€" || all[1].Data != "\uFFFD" {
		t.Fatalf("chunks %+v", all)
	}
}

func TestBatcherLimitsOutput(t *testing.T) {
	t.Parallel()
	b := newBatcher(time.Hour, 1<<20, 5)
	writes, stop := startBatcher(t, b, nil)
	b.add(codecrafter.Stdout, []byte("abc"))
	next(t, writes)
	b.add(codecrafter.Stdout, []byte("defgh"))
	b.add(codecrafter.Stderr, []byte("12345678"))
	stop()
	stdout, stderr := b.streamed()
	if stdout != "abcde" || stderr != "12345" {
		t.Fatalf("streamed %q %q, want 5 bytes each", stdout, stderr)
	}
}

func TestBatcherStopsAfterWriteError(t *testing.T) {
	t.Parallel()
	b := newBatcher(time.Millisecond, 1<<20, 1<<20)
	boom := errors.New("store down")
	writes, stop := startBatcher(t, b, boom)
	b.add(codecrafter.Stdout, []byte("x"))
	next(t, writes)
	b.add(codecrafter.Stdout, []byte("dropped"))
	if err := stop(); !errors.Is(err, boom) {
		t.Fatalf("loop returned %v, want %v", err, boom)
	}
	if len(writes) != 0 {
		t.Fatal("wrote after a write error")
	}
	if stdout, _ := b.streamed(); strings.Contains(stdout, "dropped") {
		t.Fatalf("kept output after the error: %q", stdout)
	}
}
