// Package exectest has fakes for tests of code around runs: a scriptable
// Sandbox, an in-memory ExecutionStore with session methods, a Bus
// wrapper that loses chosen events, fixed Runtimes, and helpers that wait
// on channels with a timeout. The real adapters have their own tests;
// these let the execution service and the worker (and their callers) be
// tested fast and deterministically.
package exectest

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/codecrafter/codecrafter"
)

// Sandbox is a fake codecrafter.Sandbox. With Script set, Run calls it;
// otherwise each Run is handed to the test on Calls, which drives it.
// Like the real one, a Run returns ctx's error as soon as ctx ends.
type Sandbox struct {
	Script func(ctx context.Context, req codecrafter.RunRequest, out codecrafter.OutputFunc) (*codecrafter.RunResult, error)
	Calls  chan *Call
	runs   atomic.Int64
}

var _ codecrafter.Sandbox = (*Sandbox)(nil)

// NewSandbox returns a Sandbox that hands its runs out on Calls.
func NewSandbox() *Sandbox { return &Sandbox{Calls: make(chan *Call)} }

// Call is one Run in progress.
type Call struct {
	Req    codecrafter.RunRequest
	ctx    context.Context
	emits  chan emit
	result chan outcome
}

type emit struct {
	stream codecrafter.OutputStream
	data   string
	done   chan struct{}
}

type outcome struct {
	res *codecrafter.RunResult
	err error
}

// Runs counts the Run calls so far.
func (s *Sandbox) Runs() int { return int(s.runs.Load()) }

func (s *Sandbox) Run(ctx context.Context, req codecrafter.RunRequest, out codecrafter.OutputFunc) (*codecrafter.RunResult, error) {
	s.runs.Add(1)
	if s.Script != nil {
		return s.Script(ctx, req, out)
	}
	c := &Call{Req: req, ctx: ctx, emits: make(chan emit), result: make(chan outcome, 1)}
	select {
	case s.Calls <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		select {
		case e := <-c.emits:
			out(e.stream, []byte(e.data))
			close(e.done)
		case o := <-c.result:
			return o.res, o.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Emit makes the program write data; it returns once the sandbox passed it
// on, or false when the run was killed first.
func (c *Call) Emit(stream codecrafter.OutputStream, data string) bool {
	e := emit{stream, data, make(chan struct{})}
	select {
	case c.emits <- e:
		<-e.done
		return true
	case <-c.ctx.Done():
		return false
	}
}

// Return ends the run with res and err (if it is still running).
func (c *Call) Return(res *codecrafter.RunResult, err error) { c.result <- outcome{res, err} }

// Killed ends when the run is cancelled.
func (c *Call) Killed() <-chan struct{} { return c.ctx.Done() }

// Exit returns a result with status SUCCEEDED (code 0) or FAILED.
func Exit(code int, stdout, stderr string) *codecrafter.RunResult {
	st := codecrafter.StatusSucceeded
	if code != 0 {
		st = codecrafter.StatusFailed
	}
	return &codecrafter.RunResult{Status: st, ExitCode: &code, Stdout: stdout, Stderr: stderr}
}

// Runtimes is a fixed registry: python (aliases py, python3) and go.
type Runtimes struct{}

var _ codecrafter.Runtimes = Runtimes{}

func (Runtimes) Runtimes() []codecrafter.Runtime {
	return []codecrafter.Runtime{
		{Language: "python", Name: "Python", Version: "3.11", Aliases: []string{"py", "python3"}},
		{Language: "go", Name: "Go", Version: "1.19", Aliases: []string{"golang"}},
	}
}

func (r Runtimes) Lookup(language string) (codecrafter.Runtime, bool) {
	for _, rt := range r.Runtimes() {
		for _, name := range append([]string{rt.Language}, rt.Aliases...) {
			if strings.EqualFold(name, language) {
				return rt, true
			}
		}
	}
	return codecrafter.Runtime{}, false
}
