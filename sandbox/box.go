package sandbox

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Labels on every sandbox container.
const (
	LabelInstance = "org.codecrafter.sandbox"          // the runner's Config.Instance
	LabelOwner    = "org.codecrafter.sandbox.owner"    // the runner (owner.go)
	LabelLanguage = "org.codecrafter.sandbox.language" // language id
	workDir       = "/box"
	boxUser       = "65534:65534" // nobody
)

// baseEnv is the whole environment of user programs, before the
// language's own variables: nothing comes from the host.
var baseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=" + workDir, "TMPDIR=/tmp", "LANG=C.UTF-8",
}

// box is one started container whose ccbox waits for its job.
type box struct {
	id       string
	lang     *Language
	memoryMB int
	conn     client.HijackedResponse    // attached stdin/stdout/stderr
	out      *demux                     // conn's stdout
	waited   client.ContainerWaitResult // asked for by run.finish when needed
	stopped  bool                       // waited has delivered
}

// createOptions is the hardened container: no network, read-only root,
// size-capped tmpfs work dir (the only place with exec), unprivileged
// user, no capabilities, no privilege gain, Docker's default seccomp
// rules for the native architecture only (boxSeccomp), pids, memory
// (no swap), CPU and file limits, tini as init, empty environment, no
// log storage.
func (d *Docker) createOptions(l *Language, memoryMB int, runtime string) client.ContainerCreateOptions {
	yes := true
	pids := d.cfg.PidsLimit
	mem := int64(memoryMB) << 20
	tmpfs := int64(d.cfg.TmpfsMB) << 20
	oomAdj := 500 // the host's OOM killer picks boxes before host processes
	return client.ContainerCreateOptions{
		Config: &container.Config{
			Image:           l.Image,
			Entrypoint:      []string{HelperPath},
			User:            boxUser,
			WorkingDir:      workDir,
			Hostname:        "box",
			Env:             []string{},
			AttachStdin:     true,
			AttachStdout:    true,
			AttachStderr:    true,
			OpenStdin:       true,
			StdinOnce:       true, // our disconnect closes ccbox's stdin: an orphan exits
			NetworkDisabled: true,
			Labels:          map[string]string{LabelInstance: d.cfg.Instance, LabelOwner: d.owner.String(), LabelLanguage: l.ID},
		},
		HostConfig: &container.HostConfig{
			NetworkMode:    "none",
			ReadonlyRootfs: true,
			Tmpfs: map[string]string{
				workDir: fmt.Sprintf("rw,exec,nosuid,nodev,size=%d,uid=65534,gid=65534,mode=0700", tmpfs),
				"/tmp":  fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d,mode=1777", tmpfs),
			},
			ShmSize:     8 << 20,
			CapDrop:     []string{"ALL"},
			SecurityOpt: d.securityOpt(),
			Init:        &yes,
			LogConfig:   container.LogConfig{Type: "none"},
			Runtime:     runtime,
			OomScoreAdj: oomAdj,
			IpcMode:     "private",
			Resources: container.Resources{
				Memory:     mem,
				MemorySwap: mem,
				NanoCPUs:   int64(d.cfg.CPUs * 1e9),
				PidsLimit:  &pids,
				Ulimits: []*container.Ulimit{
					{Name: "nofile", Soft: d.cfg.NoFile, Hard: d.cfg.NoFile},
					{Name: "fsize", Soft: tmpfs, Hard: tmpfs},
					{Name: "core", Soft: 0, Hard: 0},
				},
			},
		},
	}
}

func (d *Docker) securityOpt() []string {
	if d.seccomp == "" {
		return []string{"no-new-privileges"}
	}
	return []string{"no-new-privileges", d.seccomp}
}

// startBox creates, attaches and starts a container; ccbox then blocks
// reading its job. On any error the container is removed.
func (d *Docker) startBox(ctx context.Context, l *Language, memoryMB int) (*box, error) {
	rt := d.rt.Load()
	b, err := d.startBoxWith(ctx, l, memoryMB, rt.name)
	if err != nil && ctx.Err() == nil && d.fallBack(rt, err) {
		b, err = d.startBoxWith(ctx, l, memoryMB, d.Runtime())
	}
	return b, err
}

func (d *Docker) startBoxWith(ctx context.Context, l *Language, memoryMB int, runtime string) (b *box, err error) {
	// Not cancelled mid-request: the engine would create the container
	// anyway, and only its answer names it for removal.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	created, err := d.cli.ContainerCreate(cctx, d.createOptions(l, memoryMB, runtime))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("create %s container: %w", l.ID, err)
	}
	b = &box{id: created.ID, lang: l, memoryMB: memoryMB}
	defer func() {
		if err != nil {
			d.remove(b)
		}
	}()
	if err := ctx.Err(); err != nil {
		return b, err
	}
	att, err := d.cli.ContainerAttach(ctx, b.id, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		return b, fmt.Errorf("attach: %w", err)
	}
	b.conn, b.out = att.HijackedResponse, newDemux(att.Reader)
	if _, err := d.cli.ContainerStart(ctx, b.id, client.ContainerStartOptions{}); err != nil {
		return b, fmt.Errorf("start: %w", err)
	}
	d.metrics.started.WithLabelValues(runtime).Inc()
	// No ContainerWait here: a clean exit never needs it (see
	// run.finish, which asks for it when it does), and each held one is a
	// request the engine serves for the box's whole life.
	return b, nil
}

// kill stops the container at once; errors (already stopped) are moot.
func (d *Docker) kill(b *box) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = d.cli.ContainerKill(ctx, b.id, client.ContainerKillOptions{Signal: "KILL"})
}

// remove force-removes the container and closes our end of its streams.
// It does not take the run's ctx: removal must happen after cancellation.
func (d *Docker) remove(b *box) {
	if b.conn.Conn != nil {
		b.conn.Close()
		b.out.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := d.cli.ContainerRemove(ctx, b.id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil || isNotFound(err):
	case removalInProgress(err):
		// Another runner's sweep got there first: wait for its removal,
		// so that on return the container is gone either way.
		d.waitRemoved(ctx, b.id)
	default:
		d.log.Error("sandbox: remove container", "container", b.id, "err", err)
	}
	// ContainerWait's goroutine blocks until its result is received.
	if b.waited.Result != nil && !b.stopped {
		select {
		case <-b.waited.Result:
		case <-b.waited.Error:
		case <-ctx.Done():
		}
	}
}

// removalInProgress tells the engine's answer to a forced remove of a
// container that someone else is already removing (409 on current
// engines, 400 on old ones; only the message is common to both).
func removalInProgress(err error) bool {
	return strings.Contains(err.Error(), "removal of container") && strings.Contains(err.Error(), "already in progress")
}

// waitRemoved waits until the engine has removed the container.
func (d *Docker) waitRemoved(ctx context.Context, id string) {
	w := d.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionRemoved})
	select {
	case <-w.Result:
	case err := <-w.Error:
		if !isNotFound(err) {
			d.log.Error("sandbox: wait for a container's removal", "container", id, "err", err)
		}
	}
}

// demux splits docker's multiplexed attach stream (stdcopy) into the
// stdout that Read returns and ccbox's own stderr, whose first 4 KiB are
// kept for diagnostics. The copy goes through a pipe, so reading stays
// pulled by the run: a run that stops reading (at its output cap) stops
// the box's output there, and a slow reader slows the box down. The
// copier ends when the source does (the box's removal closes it) or at
// Close.
type demux struct {
	pr   *io.PipeReader
	done chan struct{}

	mu     sync.Mutex
	stderr []byte
}

func newDemux(src io.Reader) *demux {
	pr, pw := io.Pipe()
	m := &demux{pr: pr, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		_, err := stdcopy.StdCopy(pw, diagnostics{m}, src)
		pw.CloseWithError(err) // nil reads as io.EOF
	}()
	return m
}

func (m *demux) Read(p []byte) (int, error) { return m.pr.Read(p) }

// Close stops the copier once the source is closed or at its end.
func (m *demux) Close() {
	m.pr.Close()
	<-m.done
}

// diagnosed returns what ccbox wrote to its stderr (capped).
func (m *demux) diagnosed() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return string(m.stderr)
}

type diagnostics struct{ m *demux }

func (d diagnostics) Write(p []byte) (int, error) {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if room := 4096 - len(d.m.stderr); room > 0 {
		d.m.stderr = append(d.m.stderr, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
