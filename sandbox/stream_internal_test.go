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
	m := &demux{r: &raw}
	out, err := io.ReadAll(m)
	if err != nil || string(out) != "hello world" || string(m.stderr) != "diagnostic" {
		t.Errorf("demux = %q, %q, %v", out, m.stderr, err)
	}
}
