package worker

import (
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter"
)

// batcher collects a run's output as the sandbox produces it and hands it
// to a writer in batches: the first output gather after it came (what a
// program writes in one go, such as a line and its newline, is one
// write), then at most once per interval, or sooner when maxBytes are
// waiting. Consecutive output of one
// stream merges into one chunk. It never splits a UTF-8 character between
// chunks, passes at most limit bytes per stream (the sandbox caps output
// too; this guards the store), and keeps what it streamed for runs that
// end without a sandbox result.
type batcher struct {
	interval time.Duration
	maxBytes int
	limit    int

	mu       sync.Mutex
	pending  []piece
	size     int                                 // bytes in pending
	carry    map[codecrafter.OutputStream][]byte // an incomplete character's start
	accepted map[codecrafter.OutputStream]int
	kept     map[codecrafter.OutputStream]*strings.Builder
	closed   bool // the writer failed: drop further output

	notify chan struct{} // output is waiting
	full   chan struct{} // maxBytes are waiting
}

type piece struct {
	stream codecrafter.OutputStream
	data   []byte
}

// gather is how long output waits for what follows it before a batch
// goes: python's print writes the text and the newline apart, a store
// write each without it.
const gather = 3 * time.Millisecond

func newBatcher(interval time.Duration, maxBytes, limit int) *batcher {
	return &batcher{
		interval: interval, maxBytes: maxBytes, limit: limit,
		carry:    map[codecrafter.OutputStream][]byte{},
		accepted: map[codecrafter.OutputStream]int{},
		kept:     map[codecrafter.OutputStream]*strings.Builder{codecrafter.Stdout: {}, codecrafter.Stderr: {}},
		notify:   make(chan struct{}, 1),
		full:     make(chan struct{}, 1),
	}
}

// add is the sandbox's codecrafter.OutputFunc.
func (b *batcher) add(stream codecrafter.OutputStream, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.limit - b.accepted[stream]
	if b.closed || room <= 0 || len(data) == 0 {
		return
	}
	data = data[:min(len(data), room)]
	b.accepted[stream] += len(data)
	buf := append(b.carry[stream], data...)
	cut := completePrefix(buf)
	b.carry[stream] = append([]byte(nil), buf[cut:]...)
	b.queue(stream, buf[:cut])
}

// queue appends data to pending; the caller holds mu.
func (b *batcher) queue(stream codecrafter.OutputStream, data []byte) {
	if len(data) == 0 {
		return
	}
	if n := len(b.pending); n > 0 && b.pending[n-1].stream == stream {
		b.pending[n-1].data = append(b.pending[n-1].data, data...)
	} else {
		b.pending = append(b.pending, piece{stream, append([]byte(nil), data...)})
	}
	b.size += len(data)
	signal(b.notify)
	if b.size >= b.maxBytes {
		signal(b.full)
	}
}

// take returns the waiting output as chunks (Seq unset). With final, it
// includes incomplete characters left at the end.
func (b *batcher) take(final bool) []codecrafter.OutputChunk {
	b.mu.Lock()
	defer b.mu.Unlock()
	if final {
		for _, s := range []codecrafter.OutputStream{codecrafter.Stdout, codecrafter.Stderr} {
			b.queue(s, b.carry[s])
			delete(b.carry, s)
		}
	}
	chunks := make([]codecrafter.OutputChunk, 0, len(b.pending))
	for _, p := range b.pending {
		data := strings.ToValidUTF8(string(p.data), string(utf8.RuneError))
		b.kept[p.stream].WriteString(data)
		chunks = append(chunks, codecrafter.OutputChunk{Stream: p.stream, Data: data, Status: codecrafter.StatusRunning})
	}
	b.pending, b.size = nil, 0
	return chunks
}

// loop writes batches until stop closes, then writes the rest. After a
// write error it drops further output and returns the error.
func (b *batcher) loop(stop <-chan struct{}, write func([]codecrafter.OutputChunk) error) error {
	pace := time.NewTimer(b.interval)
	defer pace.Stop()
	flush := func(final bool) error {
		chunks := b.take(final)
		if len(chunks) == 0 {
			return nil
		}
		if err := write(chunks); err != nil {
			b.mu.Lock()
			b.closed = true
			b.mu.Unlock()
			return err
		}
		return nil
	}
	for {
		select {
		case <-b.notify:
		case <-stop:
			return flush(true)
		}
		pace.Reset(min(gather, b.interval))
		select {
		case <-pace.C:
		case <-b.full:
		case <-stop:
			return flush(true)
		}
		if err := flush(false); err != nil {
			return err
		}
		// Wait out the interval before the next batch, unless a full one waits.
		pace.Reset(b.interval)
		select {
		case <-pace.C:
		case <-b.full:
		case <-stop:
			return flush(true)
		}
	}
}

// streamed returns the output written so far, per stream.
func (b *batcher) streamed() (stdout, stderr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kept[codecrafter.Stdout].String(), b.kept[codecrafter.Stderr].String()
}

// completePrefix returns how much of b holds only whole UTF-8 characters
// (invalid bytes count as whole): at most an incomplete last one is cut.
func completePrefix(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if utf8.FullRune(b[i:]) {
				return len(b)
			}
			return i
		}
	}
	return len(b)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
