package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/access"
	"github.com/codecrafter/codecrafter/auth"
	"github.com/codecrafter/codecrafter/editing"
	"github.com/codecrafter/codecrafter/executions"
	"github.com/codecrafter/codecrafter/ferret"
	"github.com/codecrafter/codecrafter/graph"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/mongo"
	"github.com/codecrafter/codecrafter/rabbitmq"
	"github.com/codecrafter/codecrafter/realtime"
	"github.com/codecrafter/codecrafter/redis"
	"github.com/codecrafter/codecrafter/resolvers"
	"github.com/codecrafter/codecrafter/sandbox"
	"github.com/codecrafter/codecrafter/server"
	"github.com/codecrafter/codecrafter/sessions"
	"github.com/codecrafter/codecrafter/timeline"
	"github.com/codecrafter/codecrafter/worker"
)

// app is everything serve and worker run, built from a config.
type app struct {
	cfg      config
	log      *slog.Logger
	registry *prometheus.Registry

	db       *mongo.DB
	mongoURI string
	bus      codecrafter.Bus
	// chatLimit counts chat messages per user.
	chatLimit codecrafter.Limiter
	presence  codecrafter.Presence // who is online, on every replica
	queue     codecrafter.Queue
	runtimes  *sandbox.Registry
	sandbox   *sandbox.Docker // nil unless this process runs the worker
	worker    *worker.Worker  // nil unless this process runs the worker
	server    *server.Server  // nil for the worker daemon
	auth      *auth.Service   // nil for the worker daemon

	closers []func() // run in reverse order by close

	busMetrics *realtime.Metrics // bus traffic, chat delivery latency
}

// newApp connects the adapters the config names (starting the embedded
// store when there is no MONGO_URI) and builds the services. withAPI
// builds the GraphQL server; withWorker the sandbox and worker.
func newApp(ctx context.Context, cfg config, log *slog.Logger, withAPI, withWorker bool) (a *app, err error) {
	a = &app{cfg: cfg, log: log, registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := a.openStore(ctx); err != nil {
		return nil, err
	}
	var (
		refresh  codecrafter.RefreshTokenStore = a.db
		limiters auth.Limiters
	)
	if cfg.RedisURL != "" {
		rc, err := redis.Open(ctx, cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		a.onClose(func() { rc.Close() })
		bus := redis.NewBus(rc, cfg.RedisPrefix+"bus:", log.With("component", "bus"))
		a.bus = bus
		if withAPI {
			// Hidden, for tests of a dead replica: a short presence TTL.
			ttl, err := time.ParseDuration(cmp.Or(os.Getenv("CODECRAFTER_PRESENCE_TTL"), "0s"))
			if err != nil {
				return nil, fmt.Errorf("$CODECRAFTER_PRESENCE_TTL: %w", err)
			}
			p := redis.NewPresence(rc, cfg.RedisPrefix+"presence:", bus, redis.PresenceOptions{TTL: ttl, Logger: log.With("component", "presence")})
			a.onClose(p.Close)
			a.presence = p
		}
		refresh = redis.NewRefreshTokenStore(rc, cfg.RedisPrefix+"refresh:")
		limiters = auth.Limiters{
			Account:  redis.NewLimiter(rc, cfg.RedisPrefix+"login:acct:", cfg.LoginMaxPerAccount, cfg.LoginWindow),
			Addr:     redis.NewLimiter(rc, cfg.RedisPrefix+"login:addr:", cfg.LoginMaxPerAddr, cfg.LoginWindow),
			Register: redis.NewLimiter(rc, cfg.RedisPrefix+"register:", cfg.RegisterMaxPerAddr, cfg.RegisterWindow),
		}
		a.chatLimit = redis.NewLimiter(rc, cfg.RedisPrefix+"chat:", cfg.ChatPerMinute, time.Minute)
	} else {
		a.bus = inmem.NewBus()
		a.presence = inmem.NewPresence(a.bus)
		limiters = auth.Limiters{
			Account:  inmem.NewLimiter(cfg.LoginMaxPerAccount, cfg.LoginWindow),
			Addr:     inmem.NewLimiter(cfg.LoginMaxPerAddr, cfg.LoginWindow),
			Register: inmem.NewLimiter(cfg.RegisterMaxPerAddr, cfg.RegisterWindow),
		}
		a.chatLimit = inmem.NewLimiter(cfg.ChatPerMinute, time.Minute)
	}
	if a.busMetrics, err = realtime.NewMetrics(a.registry); err != nil {
		return nil, err
	}
	if o, ok := a.bus.(interface{ Observe(codecrafter.BusObserver) }); ok {
		o.Observe(a.busMetrics)
	}
	if cfg.AMQPURL != "" {
		q, err := rabbitmq.New(ctx, cfg.AMQPURL, rabbitmq.Options{Queue: cfg.QueueName, Logger: log.With("component", "queue")})
		if err != nil {
			return nil, fmt.Errorf("rabbitmq: %w", err)
		}
		a.onClose(func() { q.Close() })
		a.queue = q
	} else {
		q := inmem.NewQueue(inmem.QueueOptions{})
		a.onClose(func() { q.Close() })
		a.queue = q
	}
	if a.runtimes, err = sandbox.LoadRuntimes(cfg.RuntimesFile); err != nil {
		return nil, err
	}

	if withWorker {
		if err := a.startSandbox(ctx); err != nil {
			return nil, err
		}
		a.worker = worker.New(worker.Config{
			ID:            cmp.Or(cfg.WorkerID, defaultWorkerID()),
			Concurrency:   cfg.WorkerConcurrency,
			ShutdownGrace: cfg.ShutdownGrace,
		}, a.queue, a.db, a.bus, a.sandbox, log.With("component", "worker"), a.registry)
	}
	if withAPI {
		if err := a.buildAPI(ctx, refresh, limiters); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *app) openStore(ctx context.Context) error {
	uri := a.cfg.MongoURI
	if uri == "" {
		dir := filepath.Join(a.cfg.DataDir, "db")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		emb, err := ferret.Start(ctx, dir, a.log.With("component", "ferretdb"), ferret.WithListenAddr(a.cfg.EmbeddedMongoAddr))
		if err != nil {
			return fmt.Errorf("embedded store: %w", err)
		}
		a.onClose(func() { emb.Close() })
		uri = emb.URI()
		a.log.Info("embedded store started", "dir", dir, "uri", uri)
	}
	db, err := mongo.Open(ctx, a.storeURI(uri), a.cfg.MongoDB, a.log.With("component", "store"))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	a.onClose(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		db.Close(ctx)
	})
	a.db, a.mongoURI = db, uri
	return nil
}

func (a *app) startSandbox(ctx context.Context) error {
	sc := sandbox.DefaultConfig()
	sc.Instance = a.cfg.SandboxInstance
	if sc.Instance == "" {
		sc.Instance, _ = os.Hostname()
	}
	sc.OCIRuntime = a.cfg.SandboxRuntime
	sc.DefaultTimeLimit, sc.MaxTimeLimit = a.cfg.DefaultTimeLimit, a.cfg.MaxTimeLimit
	sc.DefaultMemoryMB, sc.MaxMemoryMB = a.cfg.DefaultMemoryMB, a.cfg.MaxMemoryMB
	sc.OutputLimit = a.cfg.OutputLimitKB << 10
	if a.cfg.PoolSize >= 0 {
		sc.Pool = map[string]int{}
		for _, l := range a.runtimes.Languages() {
			sc.Pool[l.Runtime().Language] = a.cfg.PoolSize
		}
	}
	pools, err := a.cfg.pools()
	if err != nil {
		return err
	}
	for lang, n := range pools {
		rt, ok := a.runtimes.Lookup(lang)
		if !ok {
			return fmt.Errorf("-pool: unknown language %q", lang)
		}
		sc.Pool[rt.Language] = n
	}
	sc.PoolMax, sc.PoolMemoryMB, sc.PoolIdle, sc.Starts = a.cfg.PoolMax, a.cfg.PoolMemoryMB, a.cfg.PoolIdle, a.cfg.SandboxStarts
	sb, err := sandbox.NewDocker(ctx, sc, a.runtimes, a.log.With("component", "sandbox"), a.registry)
	if err != nil {
		return fmt.Errorf("sandbox (is dockerd running? `scripts/services.sh docker`): %w", err)
	}
	a.onClose(func() { sb.Close() })
	a.sandbox = sb
	return nil
}

func (a *app) buildAPI(ctx context.Context, refresh codecrafter.RefreshTokenStore, limiters auth.Limiters) error {
	secret, err := a.jwtSecret()
	if err != nil {
		return err
	}
	ac := auth.DefaultConfig(secret)
	ac.Argon2 = auth.Argon2Params{MemoryKiB: uint32(a.cfg.Argon2MemoryKB), Iterations: uint32(a.cfg.Argon2Passes), Parallelism: 1}
	ac.Bus = a.bus
	authSvc, err := auth.New(ac, a.db, refresh, limiters, a.log.With("component", "auth"))
	if err != nil {
		return err
	}
	a.auth = authSvc
	stopWatch, err := authSvc.WatchRevocations(ctx) // other replicas' logouts
	if err != nil {
		return fmt.Errorf("revoked logins: %w", err)
	}
	a.onClose(stopWatch)
	if refresh == codecrafter.RefreshTokenStore(a.db) {
		a.onClose(a.db.StartRefreshSweeper(time.Hour)) // off the login path
	}
	editSvc := editing.New(a.db, a.db, a.bus, a.log.With("component", "editing"))
	execSvc := executions.New(executions.Config{
		DefaultTimeLimit: a.cfg.DefaultTimeLimit, MaxTimeLimit: a.cfg.MaxTimeLimit,
		DefaultMemoryMB: a.cfg.DefaultMemoryMB, MaxMemoryMB: a.cfg.MaxMemoryMB,
		MaxActivePerUser: a.cfg.MaxActiveRuns,
		Limiter:          inmem.NewLimiter(a.cfg.RunsPerMinute, time.Minute), // per replica
		SessionCode:      editSvc.Head,
	}, a.db, a.db, a.queue, a.bus, a.runtimes, a.log.With("component", "executions"), a.registry)
	// Access changes end subscriptions and sockets on every replica.
	hub := access.New(a.bus, a.log.With("component", "access"))
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	a.onClose(stopHub)
	if err := hub.Subscribe(hubCtx); err != nil {
		return fmt.Errorf("access events: %w", err)
	}
	if err := editSvc.WatchAccess(hubCtx); err != nil { // lets edits skip most session reads
		return fmt.Errorf("access events: %w", err)
	}
	realtimeSvc := realtime.New(realtime.Config{Metrics: a.busMetrics}, a.db, a.db, a.bus, a.presence, a.chatLimit,
		a.log.With("component", "realtime"))
	if err := realtimeSvc.WatchAccess(hubCtx); err != nil { // and messages
		return fmt.Errorf("access events: %w", err)
	}
	res := &resolvers.Resolver{
		Auth:     authSvc,
		Sessions: sessions.New(a.db, a.bus, a.runtimes, a.log.With("component", "sessions")).WithHistory(a.db),
		Runs:     execSvc,
		Realtime: realtimeSvc,
		Editing:  editSvc,
		Users:    a.db,
		Runtimes: a.runtimes,
		Access:   hub,
	}
	res.Timeline = timeline.New(a.db, a.bus, res.Realtime, editSvc, a.log.With("component", "timeline"))
	schema := graph.NewExecutableSchema(graph.Config{Resolvers: res})
	a.server, err = server.New(server.Config{
		AllowedOrigins: a.cfg.origins(),
		Introspection:  a.cfg.introspection(),
		Suggestions:    a.cfg.introspection(),
		GraphiQL:       a.cfg.graphiql(),
		TrustedProxies: a.cfg.trustedProxies(),
		WebSocket:      server.WebSocketLimits{ConnectsPerMinute: a.cfg.WSConnectsPerMin, PerUser: a.cfg.WSPerUser},
		ReplicaName:    cmp.Or(a.cfg.ReplicaName, hostname()),
	}, server.Deps{
		Schema: schema,
		Authenticate: func(_ context.Context, token string) (string, error) {
			return authSvc.Authenticate(token)
		},
		Verify: func(_ context.Context, token string) (codecrafter.Claims, error) {
			return authSvc.Verify(token)
		},
		Access:     hub,
		Ready:      a.readiness(),
		Logger:     a.log.With("component", "http"),
		Registerer: a.registry,
	})
	if err != nil {
		return err
	}
	res.Present = a.server.PresentError
	return nil
}

func (a *app) readiness() map[string]func(context.Context) error {
	checks := map[string]func(context.Context) error{
		"store": a.db.Ping,
		"bus":   a.bus.Ping,
		"queue": a.queue.Ping,
	}
	return checks
}

// jwtSecret returns the configured secret or, in development, one kept in
// the data dir so tokens survive restarts.
func (a *app) jwtSecret() ([]byte, error) {
	if a.cfg.JWTSecret != "" {
		return []byte(a.cfg.JWTSecret), nil
	}
	path := filepath.Join(a.cfg.DataDir, "jwt-secret")
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	secret := []byte(codecrafter.RandomToken(48))
	if err := os.WriteFile(path, secret, 0o600); err != nil {
		return nil, fmt.Errorf("writing the development JWT secret: %w", err)
	}
	a.log.Warn("development JWT secret generated; set CODECRAFTER_JWT_SECRET in production", "file", path)
	return secret, nil
}

func (a *app) onClose(f func()) { a.closers = append(a.closers, f) }

// close releases everything in reverse order of acquisition.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// storeURI caps the embedded store's connection pool: SQLite serializes
// its writes anyway, and each connection holds 128 KiB of proxy buffers
// (a burst of subscriptions would otherwise open a hundred).
func (a *app) storeURI(uri string) string {
	if a.cfg.MongoURI != "" || strings.Contains(uri, "?") {
		return uri
	}
	return uri + "?maxPoolSize=32"
}

func defaultWorkerID() string {
	return strings.Join([]string{hostname(), strconv.Itoa(os.Getpid())}, "-")
}

func hostname() string {
	host, _ := os.Hostname()
	return host
}
