// Command ccbox is the entrypoint of every sandbox container (under
// docker's --init). It reads one job frame from stdin, writes the sources
// into the work directory, compiles them with a time limit, runs the
// program with the given stdin and a time limit, streams everything back
// as frames on stdout, then kills every process left in the container and
// exits. It is built static (CGO_ENABLED=0) and baked into the images.
//
// It is a convenience, not a security boundary: user code runs with the
// same uid and could forge frames, so the host enforces every limit itself.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/codecrafter/codecrafter/sandbox/wire"
)

// frames serialises frames from several goroutines onto stdout.
type frames struct {
	mu sync.Mutex
	w  io.Writer
}

func (f *frames) send(k wire.Kind, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := wire.Write(f.w, k, p); err != nil {
		os.Exit(3) // the host is gone: nothing left to report to
	}
}

func (f *frames) sendJSON(k wire.Kind, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	f.send(k, b)
}

func main() {
	// killAll signals every process the caller may signal: on a host that
	// would be all of the user's processes (or all, as root). Only run as
	// a non-root container entrypoint whose parent is the init (tini).
	if os.Getuid() == 0 || os.Getppid() != 1 {
		fmt.Fprintln(os.Stderr, "ccbox: refusing to run: it must be a container's non-root entrypoint under --init")
		os.Exit(125)
	}
	out := &frames{w: os.Stdout}
	if err := serve(os.Stdin, out); err != nil {
		out.send(wire.KindFailure, []byte(err.Error()))
		os.Exit(2)
	}
}

func serve(in io.Reader, out *frames) error {
	kind, payload, err := wire.Read(in, wire.MaxJob)
	if err == io.EOF {
		return nil // the owner went away before sending a job (a pool drain)
	}
	if err != nil {
		return err
	}
	if kind != wire.KindJob {
		return fmt.Errorf("want a job frame, got %q", kind)
	}
	var job wire.Job
	if err := json.Unmarshal(payload, &job); err != nil {
		return fmt.Errorf("decode job: %w", err)
	}
	if len(job.Run) == 0 {
		return errors.New("job has no run command")
	}
	if err := writeFiles(job.Files); err != nil {
		return err
	}
	if len(job.Compile) > 0 {
		c := compile(job)
		out.sendJSON(wire.KindCompiled, c)
		if !c.OK() {
			return nil
		}
	}
	out.send(wire.KindStarted, nil)
	out.sendJSON(wire.KindExit, execute(job, out))
	return nil
}

// writeFiles creates the sources in the (fresh, empty) work directory.
func writeFiles(files []wire.File) error {
	for _, f := range files {
		if f.Name == "" || f.Name != filepath.Base(f.Name) || strings.HasPrefix(f.Name, ".") {
			return fmt.Errorf("bad file name %q", f.Name)
		}
		fd, err := os.OpenFile(f.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
		if err != nil {
			return err
		}
		_, err = fd.WriteString(f.Data)
		if cerr := fd.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// killAll kills every process ccbox may signal except itself and init:
// the program, its children, and daemons that left its process group.
func killAll() { _ = syscall.Kill(-1, syscall.SIGKILL) }

func command(argv, env []string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	if !strings.Contains(argv[0], "/") {
		if p, err := lookPath(argv[0], env); err == nil {
			cmd.Path, cmd.Err = p, nil
		}
	}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// lookPath resolves name in the job's PATH rather than ccbox's own.
func lookPath(name string, env []string) (string, error) {
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// capped keeps the first n bytes written to it.
type capped struct {
	buf []byte
	n   int
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.n - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	if len(c.buf)+len(p) > c.n {
		c.cut = true
	}
	return len(p), nil
}

func compile(job wire.Job) wire.Compiled {
	out := &capped{n: max(job.CompileOutput, 1024)}
	cmd := command(job.Compile, job.Env)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second // a leftover child must not hold the pipe open
	var timedOut atomic.Bool
	if err := cmd.Start(); err != nil {
		return wire.Compiled{ExitCode: 127, Output: err.Error()}
	}
	oomFirst(cmd.Process.Pid)
	timer := time.AfterFunc(ms(job.CompileTimeout), func() { timedOut.Store(true); killAll() })
	err := cmd.Wait()
	timer.Stop()
	killAll()
	res := wire.Compiled{ExitCode: exitCode(cmd, err), TimedOut: timedOut.Load(), Output: string(out.buf)}
	if out.cut {
		res.Output += "\n[compiler output truncated]"
	}
	if res.TimedOut {
		res.Output += "\n[compilation timed out]"
	}
	return res
}

func execute(job wire.Job, out *frames) wire.Exit {
	stdinR, stdinW, err1 := os.Pipe()
	stdoutR, stdoutW, err2 := os.Pipe()
	stderrR, stderrW, err3 := os.Pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		out.send(wire.KindStderr, []byte("sandbox: "+err.Error()+"\n"))
		return wire.Exit{ExitCode: 126}
	}
	cmd := command(job.Run, job.Env)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	start := time.Now()
	err := cmd.Start()
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdinW.Close()
		stdoutR.Close()
		stderrR.Close()
		out.send(wire.KindStderr, []byte(err.Error()+"\n"))
		return wire.Exit{ExitCode: 127}
	}
	oomFirst(cmd.Process.Pid)

	go func() {
		_, _ = stdinW.Write(job.Stdin) // fails with EPIPE if the program quits first
		stdinW.Close()
	}()

	var timedOut, cut atomic.Bool
	var total atomic.Int64
	var readers sync.WaitGroup
	pump := func(r *os.File, k wire.Kind) {
		defer readers.Done()
		defer r.Close()
		buf := make([]byte, wire.MaxChunk)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				out.send(k, buf[:n])
				if job.OutputLimit > 0 && total.Add(int64(n)) > job.OutputLimit && !cut.Swap(true) {
					killAll()
				}
			}
			if err != nil {
				return
			}
		}
	}
	readers.Add(2)
	go pump(stdoutR, wire.KindStdout)
	go pump(stderrR, wire.KindStderr)

	timer := time.AfterFunc(ms(job.RunTimeout), func() { timedOut.Store(true); killAll() })
	err = cmd.Wait()
	dur := time.Since(start)
	timer.Stop()
	killAll() // background daemons do not outlive the run

	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second): // a process stuck in the kernel; report anyway
	}

	res := wire.Exit{ExitCode: exitCode(cmd, err), TimedOut: timedOut.Load(), OutputCut: cut.Load(), DurationUs: dur.Microseconds(),
		OOMKills: oomKills()}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signal = ws.Signal().String()
	}
	return res
}

// oomFirst makes a child (and its descendants), not ccbox, the OOM
// killer's choice.
func oomFirst(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte("1000"), 0)
}

// oomKills reads the OOM kill count of the box's memory cgroup (v1, then
// v2). The kernel counts a kill before the victim dies, so once the
// program and its children are gone the count covers them all.
func oomKills() *int64 {
	for _, f := range []string{"/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"} {
		if b, err := os.ReadFile(f); err == nil {
			if n, ok := parseOOMKills(string(b)); ok {
				return &n
			}
		}
	}
	return nil
}

// parseOOMKills finds the "oom_kill N" line of memory.oom_control (v1)
// or memory.events (v2).
func parseOOMKills(s string) (int64, bool) {
	for line := range strings.Lines(s) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "oom_kill "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// exitCode is the status a shell would report: 128+signal when killed.
func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		if err != nil {
			return 127
		}
		return 0
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

func ms(v int64) time.Duration {
	if v <= 0 {
		return 10 * time.Second
	}
	return time.Duration(v) * time.Millisecond
}
