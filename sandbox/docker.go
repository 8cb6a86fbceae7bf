package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
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

	pools     map[string]*pool // by language id
	stop      context.CancelFunc
	fillers   sync.WaitGroup
	closeOnce sync.Once

	onAcquire func(containerID string) // test hook
}

var _ codecrafter.Sandbox = (*Docker)(nil)

// NewDocker connects to the engine named by the environment (DOCKER_HOST,
// else the default socket; the API version is negotiated), removes
// containers left over by an earlier runner with the same Config.Instance,
// and starts filling the warm pools. Metrics are registered with promReg
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
	d := &Docker{cli: cli, cfg: cfg, reg: reg, log: logger, metrics: m, pools: map[string]*pool{}}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return nil, fmt.Errorf("sandbox: docker engine: %w", err)
	}
	if err := d.sweep(ctx); err != nil {
		return nil, err
	}
	for _, l := range reg.Languages() {
		if _, err := cli.ImageInspect(ctx, l.Image); err != nil {
			logger.Warn("sandbox: runtime image missing: build it with `codecrafter images build`", "language", l.ID, "image", l.Image, "err", err)
		}
	}
	poolCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.stop = stop
	for id, n := range cfg.Pool {
		if n == 0 {
			continue
		}
		l, _ := reg.Language(id)
		p := newPool(d, l, n)
		d.pools[l.ID] = p
		d.fillers.Add(1)
		go func() {
			defer d.fillers.Done()
			p.fill(poolCtx)
		}()
	}
	return d, nil
}

// sweep removes this instance's containers left by a crashed runner.
func (d *Docker) sweep(ctx context.Context) error {
	list, err := d.cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: client.Filters{}.Add("label", LabelInstance+"="+d.cfg.Instance),
	})
	if err != nil {
		return fmt.Errorf("sandbox: list containers: %w", err)
	}
	for _, c := range list.Items {
		d.log.Info("sandbox: removing leftover container", "container", c.ID, "state", c.State)
		d.remove(&box{id: c.ID})
	}
	return nil
}

// Close stops the pool fillers and removes every pooled container, then
// closes the engine connection. Runs still in progress keep their own
// containers until they end; call Close after they are done.
func (d *Docker) Close() error {
	d.closeOnce.Do(func() {
		if d.stop != nil {
			d.stop()
		}
		d.fillers.Wait()
		for _, p := range d.pools {
			p.drain()
		}
	})
	return d.cli.Close()
}

// Registry returns the runtimes the runner knows.
func (d *Docker) Registry() *Registry { return d.reg }

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }
