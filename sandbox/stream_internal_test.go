package sandbox

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter"
)

func TestStreamKeepsCharactersWhole(t *testing.T) {
	t.Parallel()
	text := []byte("héllo wörld — 日本語 🎉!")
	for split := 1; split < len(text); split++ {
		var chunks [][]byte
		s := newStream(codecrafter.Stdout, func(_ codecrafter.OutputStream, p []byte) { chunks = append(chunks, p) })
		s.write(text[:split])
		s.write(text[split:])
		s.flush()
		var all []byte
		for _, c := range chunks {
			if !utf8.Valid(c) {
				t.Fatalf("split %d: chunk %q is not valid UTF-8", split, c)
			}
			all = append(all, c...)
		}
		if !bytes.Equal(all, text) || s.text.String() != string(text) {
			t.Fatalf("split %d: got %q", split, all)
		}
	}
	// Invalid bytes are passed on, not held forever.
	var got []byte
	s := newStream(codecrafter.Stderr, func(_ codecrafter.OutputStream, p []byte) { got = append(got, p...) })
	s.write([]byte{0xff, 0xfe, 'a'})
	s.write([]byte{0xe6})
	s.flush()
	if !bytes.Equal(got, []byte{0xff, 0xfe, 'a', 0xe6}) {
		t.Errorf("got %q", got)
	}
}

func TestDemux(t *testing.T) {
	t.Parallel()
	var raw bytes.Buffer
	frame := func(stream byte, p string) {
		h := [8]byte{stream}
		binary.BigEndian.PutUint32(h[4:], uint32(len(p)))
		raw.Write(h[:])
		raw.WriteString(p)
	}
	frame(1, "hello ")
	frame(2, "diagnostic")
	frame(1, "world")
	m := newDemux(&raw)
	out, err := io.ReadAll(m)
	if err != nil || string(out) != "hello world" || m.diagnosed() != "diagnostic" {
		t.Errorf("demux = %q, %q, %v", out, m.diagnosed(), err)
	}
	m.Close()
}

// TestDemuxStopsReading: a run that stops reading (its output cap) leaves
// the rest of the stream unread, and Close ends the copier.
func TestDemuxStopsReading(t *testing.T) {
	t.Parallel()
	src, feed := io.Pipe()
	m := newDemux(src)
	go func() {
		h := [8]byte{1}
		binary.BigEndian.PutUint32(h[4:], 4)
		for {
			if _, err := feed.Write(append(h[:], "data"...)); err != nil {
				return
			}
		}
	}()
	if _, err := io.ReadFull(m, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	src.Close() // as the box's removal closes its connection
	m.Close()
	if _, err := m.Read(make([]byte, 1)); err == nil {
		t.Error("read after Close")
	}
}
