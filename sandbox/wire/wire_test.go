package wire_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/codecrafter/codecrafter/sandbox/wire"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := wire.Write(&buf, wire.KindStdout, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteJSON(&buf, wire.KindExit, wire.Exit{ExitCode: 3, DurationUs: 12}); err != nil {
		t.Fatal(err)
	}
	if err := wire.Write(&buf, wire.KindStarted, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		kind    wire.Kind
		payload string
	}{{wire.KindStdout, "hello"}, {wire.KindExit, `{"exitCode":3,"durationUs":12}`}, {wire.KindStarted, ""}} {
		k, p, err := wire.Read(&buf, 1024)
		if err != nil || k != want.kind || string(p) != want.payload {
			t.Errorf("Read = %q %q %v; want %q %q", k, p, err, want.kind, want.payload)
		}
	}
	if _, _, err := wire.Read(&buf, 1024); err != io.EOF {
		t.Errorf("Read at the end = %v, want io.EOF", err)
	}
}

func TestReadRejects(t *testing.T) {
	t.Parallel()
	var big bytes.Buffer
	_ = wire.Write(&big, wire.KindStdout, bytes.Repeat([]byte("x"), 100))
	tests := []struct {
		name, input string
		limit       int
		want        string
	}{
		{"oversized", big.String(), 99, "exceeds"},
		{"truncated header", "o\x00\x00", 1024, "truncated frame header"},
		{"truncated payload", "o\x00\x00\x00\x05abc", 1024, "truncated frame"},
	}
	for _, tc := range tests {
		_, _, err := wire.Read(strings.NewReader(tc.input), tc.limit)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
