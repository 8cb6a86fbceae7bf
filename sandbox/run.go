package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/sandbox/wire"
)

// Grace periods the host adds to ccbox's own limits before it kills the
// container itself: ccbox normally reports first.
const (
	runGrace     = time.Second
	compileGrace = 5 * time.Second
	exitGrace    = 3 * time.Second // from the exit frame to the container stopping
)

// Run runs req in a fresh container (a pooled one when ready), which is
// always force-removed: in the background once Run has its result (Close
// waits for those removals). out is called from Run's goroutine, in
// order, with chunks that end on UTF-8 character boundaries; a slow out
// slows the program down but its limits still run.
// Time and memory limits of 0 take the configured defaults, larger ones
// are capped at the maximums, and a language's minMemoryMb raises small
// ones.
func (d *Docker) Run(ctx context.Context, req codecrafter.RunRequest, out codecrafter.OutputFunc) (*codecrafter.RunResult, error) {
	l, ok := d.reg.Language(req.Language)
	if !ok {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "unknown language %q", req.Language)
	}
	if len(req.Stdin) > codecrafter.MaxStdinLen || len(req.Code)+len(req.Stdin) > wire.MaxJob-(64<<10) {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "code or stdin is too large")
	}
	if out == nil {
		out = func(codecrafter.OutputStream, []byte) {}
	}
	lim := d.cfg.limitsFor(l, req.TimeLimit, req.MemoryLimitMB)
	d.metrics.inFlight.Inc()
	defer d.metrics.inFlight.Dec()

	res, r, err := d.runOnce(ctx, l, lim, req, out, true)
	if errors.Is(err, errNotStarted) && ctx.Err() == nil {
		// A pooled container can die while it waits (an engine restart,
		// an operator's docker rm): no user code ran, so try once more in a
		// fresh one.
		d.log.Warn("sandbox: retrying in a fresh container", "language", l.ID, "err", err)
		res, r, err = d.runOnce(ctx, l, lim, req, out, false)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if r == nil {
		return nil, codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "the sandbox is unavailable")
	}
	if err != nil {
		d.log.Error("sandbox: run failed", "language", l.ID, "container", r.b.id, "err", err, "box_stderr", r.b.out.diagnosed())
		return nil, codecrafter.Wrap(err, codecrafter.EINTERNAL, "the sandbox failed to run the program")
	}
	d.metrics.runs.WithLabelValues(l.ID, string(res.Status)).Inc()
	return res, nil
}

// errNotStarted means the box ended before it reported anything: no user
// code ran, so the run can be retried.
var errNotStarted = errors.New("the box ended before it started")

// runOnce runs req in one container, which it always removes. A nil run
// means no container could be had.
func (d *Docker) runOnce(ctx context.Context, l *Language, lim limits, req codecrafter.RunRequest, out codecrafter.OutputFunc, pooled bool) (*codecrafter.RunResult, *run, error) {
	b, err := d.acquire(ctx, l, lim.memoryMB, pooled)
	if err != nil {
		return nil, nil, err
	}
	defer d.removeLater(b) // runs on errors and panics too
	if d.onAcquire != nil {
		d.onAcquire(b.id)
	}
	r := &run{d: d, b: b, lim: lim, out: out}
	res, err := r.execute(ctx, d.job(l, lim, req))
	return res, r, err
}

// acquire takes a pooled box, adjusting its memory limit when the run's
// differs (on runc, whose cgroup limit a live update changes), or starts
// a new one within a creation slot.
func (d *Docker) acquire(ctx context.Context, l *Language, memoryMB int, pooled bool) (*box, error) {
	if p := d.pools[l.ID]; p != nil && pooled && (memoryMB == d.cfg.DefaultMemoryMB || d.resizable) {
		if b := p.take(ctx); b != nil {
			if b.memoryMB == memoryMB || d.resize(ctx, b, memoryMB) == nil {
				d.metrics.acquired.WithLabelValues(l.ID, "pool").Inc()
				return b, nil
			}
			d.removeLater(b)
		}
	}
	d.metrics.acquired.WithLabelValues(l.ID, "fresh").Inc()
	if err := d.createSlot(ctx); err != nil {
		return nil, err
	}
	defer d.releaseSlot()
	return d.startBox(ctx, l, memoryMB)
}

func (d *Docker) resize(ctx context.Context, b *box, memoryMB int) error {
	mem := int64(memoryMB) << 20
	_, err := d.cli.ContainerUpdate(ctx, b.id, client.ContainerUpdateOptions{
		Resources: &container.Resources{Memory: mem, MemorySwap: mem},
	})
	if err == nil {
		b.memoryMB = memoryMB
	}
	return err
}

// job is what ccbox gets: sources, commands, environment and limits.
func (d *Docker) job(l *Language, lim limits, req codecrafter.RunRequest) wire.Job {
	files := []wire.File{{Name: l.File, Data: req.Code}}
	for _, name := range slices.Sorted(maps.Keys(l.ExtraFiles)) {
		files = append(files, wire.File{Name: name, Data: l.ExtraFiles[name]})
	}
	env := slices.Clone(baseEnv)
	for _, k := range slices.Sorted(maps.Keys(l.Env)) {
		env = append(env, k+"="+l.Env[k])
	}
	return wire.Job{
		Files: files, Compile: l.Compile, Run: l.Run, Env: env, Stdin: []byte(req.Stdin),
		CompileTimeout: d.cfg.CompileTimeLimit.Milliseconds(), RunTimeout: lim.time.Milliseconds(),
		CompileOutput: d.cfg.CompileOutput, OutputLimit: int64(d.cfg.OutputLimit),
	}
}

// Why the host stopped a box itself.
type stopReason int

const (
	stopNone stopReason = iota
	stopCancelled
	stopCompileTime
	stopRunTime
	stopOutput
	stopProtocol
)

// run is the host's side of one box's protocol.
type run struct {
	d   *Docker
	b   *box
	lim limits
	out codecrafter.OutputFunc

	mu     sync.Mutex
	reason stopReason
}

// stop kills the box for reason; the first reason wins.
func (r *run) stop(reason stopReason) {
	r.mu.Lock()
	first := r.reason == stopNone
	if first {
		r.reason = reason
	}
	r.mu.Unlock()
	if first {
		r.d.kill(r.b)
	}
}

func (r *run) stopped() stopReason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reason
}

// phase of the protocol, to reject frames out of order.
type phase int

const (
	phaseCompile phase = iota
	phaseRun
	phaseExited
)

func (r *run) execute(ctx context.Context, job wire.Job) (*codecrafter.RunResult, error) {
	defer context.AfterFunc(ctx, func() { r.stop(stopCancelled) })()

	compiles := len(job.Compile) > 0
	preStart := time.AfterFunc(time.Duration(job.CompileTimeout)*time.Millisecond+compileGrace, func() { r.stop(stopCompileTime) })
	defer preStart.Stop()
	var runTimer *time.Timer
	defer func() {
		if runTimer != nil {
			runTimer.Stop()
		}
	}()

	_ = r.b.conn.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := wire.WriteJSON(r.b.conn.Conn, wire.KindJob, job); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotStarted, err)
	}
	_ = r.b.conn.CloseWrite()

	var (
		res      = &codecrafter.RunResult{}
		ph       = phaseCompile
		started  time.Time
		exit     *wire.Exit
		violated string
		outBytes int
		stdout   = newStream(codecrafter.Stdout, r.out)
		stderr   = newStream(codecrafter.Stderr, r.out)
		failure  string
		frames   int
	)
	limit := max(wire.MaxChunk, 6*r.d.cfg.CompileOutput+4096) // JSON escapes at most 6x
read:
	for {
		kind, payload, err := wire.Read(r.b.out, limit)
		if err != nil {
			if frames == 0 && r.stopped() == stopNone {
				return nil, fmt.Errorf("%w: %w", errNotStarted, err)
			}
			if ph == phaseRun && r.stopped() == stopNone && !errors.Is(err, io.EOF) {
				violated = err.Error()
			}
			break
		}
		frames++
		switch {
		case kind == wire.KindCompiled && ph == phaseCompile && compiles:
			var c wire.Compiled
			if err := json.Unmarshal(payload, &c); err != nil {
				return nil, fmt.Errorf("compile frame: %w", err)
			}
			out := c.Output
			res.CompileOutput = &out
			if !c.OK() {
				res.Status = codecrafter.StatusCompileError
				break read
			}
		case kind == wire.KindStarted && ph == phaseCompile:
			ph, started = phaseRun, time.Now()
			preStart.Stop()
			runTimer = time.AfterFunc(r.lim.time+runGrace, func() { r.stop(stopRunTime) })
		case kind == wire.KindFailure && ph == phaseCompile:
			failure = string(payload)
			break read
		case (kind == wire.KindStdout || kind == wire.KindStderr) && ph == phaseRun:
			s := stdout
			if kind == wire.KindStderr {
				s = stderr
			}
			if room := r.d.cfg.OutputLimit - outBytes; len(payload) > room {
				s.write(payload[:room])
				outBytes += room
				r.stop(stopOutput)
				break read
			}
			outBytes += len(payload)
			s.write(payload)
		case kind == wire.KindExit && ph == phaseRun:
			var x wire.Exit
			if err := json.Unmarshal(payload, &x); err != nil {
				violated = "bad exit frame"
				break read
			}
			exit, ph = &x, phaseExited
			break read
		default:
			// Before the run only ccbox writes; after it, user code may
			// have written into ccbox's stdout: its own run is void.
			if ph != phaseRun {
				return nil, fmt.Errorf("unexpected frame %q in phase %d", kind, ph)
			}
			violated = fmt.Sprintf("unexpected frame %q", kind)
			break read
		}
	}
	preStart.Stop()
	if runTimer != nil {
		runTimer.Stop()
	}
	if violated != "" {
		r.stop(stopProtocol)
	}
	runTime := time.Since(started)
	stdout.flush()
	stderr.flush()

	state, err := r.finish(ctx, exit, violated)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.Stdout, res.Stderr = stdout.text.String(), stderr.text.String()
	if !started.IsZero() {
		res.Duration = runTime
		// ccbox's own measure excludes the host's framing overhead; an
		// older ccbox that sends none leaves the host's.
		if exit != nil {
			if d := time.Duration(exit.DurationUs) * time.Microsecond; d > 0 && d < runTime {
				res.Duration = d
			}
		}
	}
	reason := r.stopped()
	switch {
	case state.OOMKilled:
		res.Status = codecrafter.StatusMemoryLimit
	case res.Status == codecrafter.StatusCompileError:
	case reason == stopOutput || exit != nil && exit.OutputCut:
		res.Status = codecrafter.StatusOutputLimit
	case reason == stopRunTime || exit != nil && exit.TimedOut:
		res.Status = codecrafter.StatusTimedOut
	case reason == stopCompileTime && compiles && started.IsZero():
		msg := "compilation timed out"
		res.CompileOutput, res.Status = &msg, codecrafter.StatusCompileError
	case failure != "":
		return nil, fmt.Errorf("ccbox: %s", failure)
	case started.IsZero():
		return nil, fmt.Errorf("box ended before the program started (stop reason %d, exit %d)", reason, state.ExitCode)
	case exit != nil && violated == "":
		code := exit.ExitCode
		res.ExitCode = &code
		res.Status = codecrafter.StatusFailed
		if code == 0 {
			res.Status = codecrafter.StatusSucceeded
		}
	default: // the program broke the protocol or killed ccbox
		code := state.ExitCode
		if code == 0 {
			code = 1
		}
		res.ExitCode, res.Status = &code, codecrafter.StatusFailed
		stderr.write([]byte("\n[sandbox: the program interfered with the sandbox helper]\n"))
		stderr.flush()
		res.Stderr = stderr.text.String()
		r.d.log.Warn("sandbox: protocol violation", "container", r.b.id, "detail", violated)
	}
	return res, nil
}

// finish waits for the container to stop (killing it when ccbox does not
// exit on its own) and returns its final state. When ccbox reported a
// clean exit with the box's OOM kill count, that count is all the state
// needed: the container's exit (~35 ms of engine work) is not waited for,
// and its removal kills whatever is left. Like the exit code, the count is
// a claim user code could forge about its own run only; the cgroup
// enforces the limit either way.
func (r *run) finish(ctx context.Context, exit *wire.Exit, violated string) (*container.State, error) {
	if exit != nil && exit.OOMKills != nil && violated == "" && r.stopped() == stopNone && r.d.kernelMemcg {
		return &container.State{OOMKilled: *exit.OOMKills > 0}, nil
	}
	if r.b.waited.Result == nil {
		// Not tied to ctx: it ends when the container stops or is removed
		// (a stopped container answers at once).
		r.b.waited = r.d.cli.ContainerWait(context.WithoutCancel(ctx), r.b.id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	}
	wait := func(d time.Duration) (bool, error) {
		select {
		case <-r.b.waited.Result:
			r.b.stopped = true
			return true, nil
		case err := <-r.b.waited.Error:
			r.b.stopped = true
			return true, err
		case <-time.After(d):
			return false, nil
		}
	}
	ok, err := wait(exitGrace)
	if !ok {
		r.stop(stopProtocol)
		if ok, err = wait(30 * time.Second); !ok {
			return nil, fmt.Errorf("container did not stop")
		}
	}
	if err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("wait: %w", err)
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	info, err := r.d.cli.ContainerInspect(ictx, r.b.id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	st := info.Container.State
	if st == nil {
		return nil, fmt.Errorf("inspect: no state")
	}
	// A SIGKILL the host did not send, to the box or (ccbox reports it) to
	// the program, may be a memory kill the state missed: the engine
	// hears of the OOM and of the exit separately, and under load the
	// exit can come first.
	killed := st.ExitCode == 128+9 || exit != nil && exit.ExitCode == 128+9
	if !st.OOMKilled && killed && r.stopped() == stopNone {
		st.OOMKilled = r.d.oomLogged(ictx, r.b.id, st.StartedAt)
		r.d.log.Debug("sandbox: SIGKILLed box", "container", r.b.id, "oom_event", st.OOMKilled)
	}
	return st, nil
}

// oomLogged reports whether the engine logged an OOM event for a
// container since it started. A SIGKILLed box the host did not stop may
// be a memory kill whose OOM notice the engine's exit handling missed
// (seen under gVisor, where the whole sandbox is killed: the engine
// pairs OOM notices with the next exit it hears of, which can be
// another container's, or comes first): State.OOMKilled then stays
// false, but the container's OOM event is logged.
func (d *Docker) oomLogged(ctx context.Context, id, since string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res := d.cli.Events(ctx, client.EventsListOptions{
		Since: since, Until: "-2s", // two seconds from now
		Filters: client.Filters{}.Add("container", id).Add("event", "oom"),
	})
	defer func() {
		cancel()
		for range res.Err { // the stream's goroutine has ended
		}
	}()
	select {
	case <-res.Messages:
		return true
	case <-res.Err:
		return false
	}
}

// stream collects one output stream and forwards it in chunks that end
// on UTF-8 character boundaries (up to 3 bytes wait for the next chunk).
type stream struct {
	name    codecrafter.OutputStream
	out     codecrafter.OutputFunc
	text    strings.Builder
	pending []byte
}

func newStream(name codecrafter.OutputStream, out codecrafter.OutputFunc) *stream {
	return &stream{name: name, out: out}
}

func (s *stream) write(p []byte) {
	data := append(s.pending, p...)
	cut := len(data)
	for i := len(data) - 1; i >= 0 && i >= len(data)-utf8.UTFMax; i-- {
		if utf8.RuneStart(data[i]) {
			if !utf8.FullRune(data[i:]) {
				cut = i
			}
			break
		}
	}
	s.pending = slices.Clone(data[cut:])
	s.emit(data[:cut])
}

func (s *stream) flush() {
	s.emit(s.pending)
	s.pending = nil
}

func (s *stream) emit(p []byte) {
	if len(p) == 0 {
		return
	}
	s.text.Write(p)
	s.out(s.name, slices.Clone(p))
}
