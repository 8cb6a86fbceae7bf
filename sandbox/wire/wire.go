// Package wire is the protocol between the sandbox runner on the host and
// ccbox, the helper inside each container. Both directions use the same
// framing: one kind byte, a 4-byte big-endian payload length, the payload.
//
// The host sends one Job frame on the container's stdin. ccbox answers on
// its stdout with a Compiled frame (compiled languages only), a Started
// frame, Stdout/Stderr frames as the program writes, and an Exit frame.
// User code runs as the same uid as ccbox and could write frames too, so
// the host treats every frame after Started as a claim about the user's own
// run and enforces all limits itself.
package wire

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
)

// Kind names a frame.
type Kind byte

const (
	KindJob      Kind = 'J' // host -> box: Job as JSON
	KindCompiled Kind = 'C' // box -> host: Compiled as JSON
	KindStarted  Kind = 'S' // box -> host: the program starts now (no payload)
	KindStdout   Kind = 'o' // box -> host: raw bytes
	KindStderr   Kind = 'e' // box -> host: raw bytes
	KindExit     Kind = 'X' // box -> host: Exit as JSON
	KindFailure  Kind = 'F' // box -> host: ccbox itself failed; message text
)

// Size limits of frames.
const (
	MaxJob    = 8 << 20  // code plus stdin plus commands
	MaxChunk  = 32 << 10 // one output chunk
	MaxFrame  = MaxJob   // anything larger is a protocol error
	headerLen = 5
)

// File is a source file to write into the work directory.
type File struct {
	Name string `json:"name"` // a plain file name, no directories
	Data string `json:"data"`
}

// Job is everything ccbox needs for one run.
type Job struct {
	Files          []File   `json:"files"`
	Compile        []string `json:"compile,omitempty"` // argv; none for interpreted languages
	Run            []string `json:"run"`
	Env            []string `json:"env"` // KEY=value, the programs' whole environment
	Stdin          []byte   `json:"stdin,omitempty"`
	CompileTimeout int64    `json:"compileTimeoutMs"`
	RunTimeout     int64    `json:"runTimeoutMs"`
	CompileOutput  int      `json:"compileOutputLimit"` // bytes kept of compiler output
	OutputLimit    int64    `json:"outputLimit"`        // ccbox stops the program past this
}

// Compiled reports the compile step.
type Compiled struct {
	ExitCode int    `json:"exitCode"`
	TimedOut bool   `json:"timedOut,omitempty"`
	Output   string `json:"output"`
}

// OK reports whether compilation succeeded.
func (c Compiled) OK() bool { return c.ExitCode == 0 && !c.TimedOut }

// Exit reports how the program ended.
type Exit struct {
	ExitCode   int    `json:"exitCode"`         // 128+signal when killed by a signal
	Signal     string `json:"signal,omitempty"` // e.g. "killed"
	TimedOut   bool   `json:"timedOut,omitempty"`
	OutputCut  bool   `json:"outputCut,omitempty"` // ccbox stopped it at the output limit
	DurationUs int64  `json:"durationUs"`          // the program's wall time, microseconds
	// OOMKills is the box's memory cgroup OOM kill count once the program
	// and its children are gone (they may die of an OOM kill while it
	// exits 0); nil when ccbox could not read it.
	OOMKills *int64 `json:"oomKills,omitempty"`
}

// Write writes one frame.
func Write(w io.Writer, k Kind, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("wire: frame of %d bytes is too large", len(payload))
	}
	buf := make([]byte, headerLen+len(payload))
	buf[0] = byte(k)
	binary.BigEndian.PutUint32(buf[1:headerLen], uint32(len(payload)))
	copy(buf[headerLen:], payload)
	_, err := w.Write(buf)
	return err
}

// WriteJSON writes one frame holding v as JSON.
func WriteJSON(w io.Writer, k Kind, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return Write(w, k, b)
}

// Read reads one frame whose payload is at most limit bytes. It returns
// io.EOF only when the stream ends cleanly between frames.
func Read(r io.Reader, limit int) (Kind, []byte, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, nil, fmt.Errorf("wire: truncated frame header")
		}
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if int64(n) > int64(limit) {
		return 0, nil, fmt.Errorf("wire: frame %q of %d bytes exceeds %d", h[0], n, limit)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, fmt.Errorf("wire: truncated frame: %w", err)
	}
	return Kind(h[0]), payload, nil
}
