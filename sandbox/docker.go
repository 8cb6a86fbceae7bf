package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/codecrafter/codecrafter"
)

// Docker runs programs in hardened, single-use Docker containers. It
// implements codecrafter.Sandbox and is safe for concurrent use.
type Docker struct {
	cli     *client.Client
	cfg     Config
	reg     *Registry
	log     *slog.Logger
	metrics *metrics
	owner   owner // LabelOwner of this runner's boxes

	pools map[string]*pool // by language id
	now   func() time.Time
	// creates bounds the boxes being started at once (Config.Starts);
	// poolBoxes counts the
	// pools' boxes, ready or starting, against the memory budget.
	creates   chan struct{}
	poolBoxes atomic.Int64
	stop      context.CancelFunc
	fillers   sync.WaitGroup
	closeOnce sync.Once
	// rt is the OCI runtime of new boxes (see chooseRuntime); it changes
	// once at most, when an automatic choice fails (fallBack).
	rt            atomic.Pointer[runtimeChoice]
	engineDefault string
	// kernelMemcg: the runtime (runc, crun) puts boxes in a kernel memory
	// cgroup whose OOM kill count ccbox can read.
	kernelMemcg bool
	resizable   bool   // runc, crun: a pooled box's memory limit can be changed live
	seccomp     string // boxes' security option for it (boxSeccomp)

	// Used boxes are removed in the background (removeLater); removing
	// bounds how many are pending, so a slow engine still slows runs down.
	mu       sync.Mutex
	closed   bool
	removals sync.WaitGroup
	removing chan struct{}

	onAcquire func(containerID string) // test hook
}

var _ codecrafter.Sandbox = (*Docker)(nil)

// NewDocker connects to the engine named by the environment (DOCKER_HOST,
// else the default socket; the API version is negotiated), removes the
// containers other runners left (see owner.go: never those of a live
// runner, whatever their Instance), and starts filling the warm pools. Metrics are registered with promReg
// when it is not nil. Close releases everything.
func NewDocker(ctx context.Context, cfg Config, reg *Registry, logger *slog.Logger, promReg prometheus.Registerer) (*Docker, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("sandbox: docker client: %w", err)
	}
	d, err := newDocker(ctx, cli, cfg, reg, logger, promReg)
	if err != nil {
		cli.Close()
	}
	return d, err
}

func newDocker(ctx context.Context, cli *client.Client, cfg Config, reg *Registry, logger *slog.Logger, promReg prometheus.Registerer) (*Docker, error) {
	if reg == nil {
		reg = DefaultRuntimes()
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(reg); err != nil {
		return nil, err
	}
	m, err := newMetrics(promReg)
	if err != nil {
		return nil, fmt.Errorf("sandbox: metrics: %w", err)
	}
	d := &Docker{cli: cli, cfg: cfg, reg: reg, log: logger, metrics: m, owner: newOwner(), pools: map[string]*pool{},
		removing: make(chan struct{}, maxPendingRemovals), now: time.Now,
		creates: make(chan struct{}, cfg.Starts)}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return nil, fmt.Errorf("sandbox: docker engine: %w", err)
	}
	info, err := cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, fmt.Errorf("sandbox: docker engine: %w", err)
	}
	d.engineDefault = info.Info.DefaultRuntime
	d.seccomp = boxSeccomp(info.Info.SecurityOptions)
	rt, auto := chooseRuntime(cfg.OCIRuntime, slices.Collect(maps.Keys(info.Info.Runtimes)), d.engineDefault)
	d.setRuntime(rt, auto)
	if err := d.sweep(ctx); err != nil {
		return nil, err
	}
	logger.Info("sandbox: runner started", "instance", cfg.Instance, "owner", d.owner.String(), "runtime", d.Runtime())
	for _, l := range reg.Languages() {
		if _, err := cli.ImageInspect(ctx, l.Image); err != nil {
			logger.Warn("sandbox: runtime image missing: build it with `codecrafter images build`", "language", l.ID, "image", l.Image, "err", err)
		}
	}
	poolCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.stop = stop
	for _, l := range reg.Languages() {
		floor, most := cfg.Pool[l.ID], cfg.PoolMax
		if most == 0 { // demand off: a fixed pool of the floor
			most = floor
		}
		if most = max(most, floor); most == 0 {
			continue
		}
		dem := newDemand(floor, most, cfg.PoolIdle)
		p := newPool(d, l, dem)
		d.pools[l.ID] = p
		d.fillers.Add(1)
		go func() {
			defer d.fillers.Done()
			p.fill(poolCtx)
		}()
	}
	return d, nil
}

// sweep removes the sandbox containers (of any instance) that other
// runners left: those of a runner known to be gone, and stale stopped ones.
func (d *Docker) sweep(ctx context.Context) error {
	list, err := d.cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: client.Filters{}.Add("label", LabelInstance),
	})
	if err != nil {
		return fmt.Errorf("sandbox: list containers: %w", err)
	}
	for _, c := range list.Items {
		why := "its runner is gone"
		if !d.owner.gone(c.Labels[LabelOwner], processStart) {
			var finished string
			if c.State == container.StateExited || c.State == container.StateDead {
				info, err := d.cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
				if err != nil || info.Container.State == nil {
					continue // removed meanwhile, or to be judged at the next start
				}
				finished = info.Container.State.FinishedAt
			}
			if !stale(c.State, time.Unix(c.Created, 0), finished, time.Now()) {
				continue
			}
			why = "stopped long ago"
		}
		d.log.Info("sandbox: removing leftover container", "container", c.ID, "state", c.State,
			"instance", c.Labels[LabelInstance], "owner", c.Labels[LabelOwner], "why", why)
		d.remove(&box{id: c.ID})
	}
	return nil
}

// poolBoxMB is what a waiting box is counted at against the pools'
// memory budget: its containerd shim (~13 MB resident) plus tini and
// ccbox (~1 MB in its cgroup), measured on runc.
const poolBoxMB = 16

// reserveBox takes a place in the pools' memory budget for a new box.
func (d *Docker) reserveBox() bool {
	limit := int64(d.cfg.PoolMemoryMB / poolBoxMB)
	for {
		n := d.poolBoxes.Load()
		if n >= limit {
			return false
		}
		if d.poolBoxes.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// createSlot waits for one of the creation slots.
func (d *Docker) createSlot(ctx context.Context) error {
	select {
	case d.creates <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Docker) releaseSlot() { <-d.creates }

// maxPendingRemovals bounds the used containers awaiting removal.
const maxPendingRemovals = 8

// removeLater removes a used box in the background, off the run's path.
// After Close it removes at once.
func (d *Docker) removeLater(b *box) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.remove(b)
		return
	}
	d.removals.Add(1)
	d.mu.Unlock()
	d.removing <- struct{}{}
	go func() {
		defer d.removals.Done()
		defer func() { <-d.removing }()
		d.remove(b)
	}()
}

// Close stops the pool fillers, removes every pooled container and waits
// for pending removals of used ones, then closes the engine connection.
// Runs still in progress keep their own containers until they end; call
// Close after they are done.
func (d *Docker) Close() error {
	d.closeOnce.Do(func() {
		if d.stop != nil {
			d.stop()
		}
		d.fillers.Wait()
		for _, p := range d.pools {
			p.drain()
		}
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		d.removals.Wait()
	})
	return d.cli.Close()
}

// Registry returns the runtimes the runner knows.
func (d *Docker) Registry() *Registry { return d.reg }

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// preferredRuntime is the OCI runtime boxes use when none is configured
// and the engine has it registered: crun starts and removes a container
// for less than runc (C, no re-exec of a Go binary; BENCHMARKS.md), with
// the same namespaces, cgroups, seccomp profile and capabilities, which
// the engine sets.
const preferredRuntime = "crun"

type runtimeChoice struct {
	name string
	auto bool // chosen by the runner, not configured: may fall back
}

// chooseRuntime picks the runtime of boxes: the configured one, else
// preferredRuntime when the engine has it, else the engine's default
// (named explicitly, so Runtime says what boxes use).
func chooseRuntime(configured string, registered []string, engineDefault string) (name string, auto bool) {
	switch {
	case configured != "":
		return configured, false
	case slices.Contains(registered, preferredRuntime):
		return preferredRuntime, true
	}
	return engineDefault, false
}

func (d *Docker) setRuntime(name string, auto bool) {
	d.rt.Store(&runtimeChoice{name: name, auto: auto})
	d.kernelMemcg = memcgRuntime(name)
	d.resizable = d.kernelMemcg
}

// memcgRuntime reports whether a runtime's boxes live in a kernel memory
// cgroup (runc and crun; not gVisor), so kernelMemcg and resizable hold.
func memcgRuntime(name string) bool {
	return name == "runc" || name == "io.containerd.runc.v2" || name == "crun"
}

// Runtime returns the OCI runtime new boxes are started with.
func (d *Docker) Runtime() string { return d.rt.Load().name }

// fallBack switches new boxes from an automatically chosen runtime that
// failed to start one (registered but unusable, e.g. crun on a hybrid
// cgroup layout whose v2 side holds controllers) to the engine's default
// when that is runc, once. It reports whether the caller should try again.
func (d *Docker) fallBack(failed *runtimeChoice, err error) bool {
	if !failed.auto || !memcgRuntime(d.engineDefault) || !strings.Contains(strings.ToLower(err.Error()), "runtime") {
		return false
	}
	next := &runtimeChoice{name: d.engineDefault}
	if d.rt.CompareAndSwap(failed, next) {
		d.log.Warn("sandbox: runtime failed, falling back to the engine's default", "runtime", failed.name, "default", d.engineDefault, "err", err)
	}
	return true
}
