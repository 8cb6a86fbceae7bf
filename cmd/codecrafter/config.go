package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/codecrafter/codecrafter/auth"
	"github.com/codecrafter/codecrafter/server"
)

// config is every setting of serve and worker. Each is a flag with an
// environment fallback; flags win.
type config struct {
	Addr      string
	Env       string // development or production
	DataDir   string
	LogLevel  string
	LogFormat string // auto, text or json

	MongoURI string
	MongoDB  string
	RedisURL string
	AMQPURL  string
	// QueueName and RedisPrefix let deployments (and tests) share a broker.
	QueueName   string
	RedisPrefix string
	// EmbeddedMongoAddr is where the embedded store listens (so a separate
	// worker process can share it); empty picks a free loopback port.
	EmbeddedMongoAddr string

	JWTSecret      string
	Argon2MemoryKB int
	Argon2Passes   int
	AllowedOrigins string
	TrustProxy     bool // the same as TrustedProxies 1
	TrustedProxies int
	Introspection  string   // auto, on or off
	GraphiQL       autoBool // unset: on in development

	LoginMaxPerAccount int
	LoginMaxPerAddr    int
	LoginWindow        time.Duration
	RegisterMaxPerAddr int
	RegisterWindow     time.Duration

	Worker            string // auto, on or off: run the worker inside serve
	MetricsAddr       string // /metrics and /healthz of serve and worker, never on Addr
	WorkerID          string
	ReplicaName       string
	WorkerConcurrency int
	ShutdownGrace     time.Duration

	RuntimesFile     string
	SandboxInstance  string // container label, for operators
	SandboxRuntime   string // OCI runtime: empty (crun when registered), runc, crun, or runsc for gVisor
	PoolSize         int
	Pool             string // lang=n,lang=n
	PoolMax          int    // a language's demand-sized pool at most
	PoolMemoryMB     int    // budget of all waiting containers
	PoolIdle         time.Duration
	SandboxStarts    int // containers being started at once
	DefaultTimeLimit time.Duration
	MaxTimeLimit     time.Duration
	DefaultMemoryMB  int
	MaxMemoryMB      int
	OutputLimitKB    int
	MaxActiveRuns    int // a user's queued plus running runs
	RunsPerMinute    int // a user's execute calls per minute, per API replica
	ChatPerMinute    int // a user's chat messages per minute
	WSConnectsPerMin int // new WebSockets per client address per minute
	WSPerUser        int // open WebSockets per user
	GCPercent        int // the Go GC's target (GOGC), unless GOGC is set

	envErrs []error // unparsable environment values, reported by validate
}

// bind registers the flags on fs.
func (c *config) bind(fs *flag.FlagSet) {
	str := func(p *string, name, env, def, help string) {
		fs.StringVar(p, name, envOr(env, def), help+envHelp(env))
	}
	num := func(p *int, name, env string, def int, help string) {
		fs.IntVar(p, name, envParse(c, env, def, strconv.Atoi), help+envHelp(env))
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, help string) {
		fs.DurationVar(p, name, envParse(c, env, def, time.ParseDuration), help+envHelp(env))
	}
	boolean := func(p *bool, name, env string, def bool, help string) {
		fs.BoolVar(p, name, envParse(c, env, def, strconv.ParseBool), help+envHelp(env))
	}

	str(&c.Addr, "addr", "CODECRAFTER_ADDR", ":8080", "HTTP listen address")
	str(&c.Env, "env", "CODECRAFTER_ENV", "development", "development or production (production: introspection and suggestions off, JWT secret required)")
	str(&c.DataDir, "data-dir", "CODECRAFTER_DATA_DIR", "./data", "directory of the embedded store's files and the development JWT secret")
	str(&c.LogLevel, "log-level", "CODECRAFTER_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "CODECRAFTER_LOG_FORMAT", "auto", "auto (colour text on a terminal, JSON otherwise), text or json")

	str(&c.MongoURI, "mongo-uri", "MONGO_URI", "", "MongoDB URI; empty starts the embedded FerretDB store in the data dir")
	str(&c.MongoDB, "mongo-db", "CODECRAFTER_MONGO_DB", "codecrafter", "database name")
	str(&c.EmbeddedMongoAddr, "embedded-mongo-addr", "CODECRAFTER_EMBEDDED_MONGO_ADDR", "127.0.0.1:0", "listen address of the embedded store")
	str(&c.RedisURL, "redis-url", "REDIS_URL", "", "Redis URL for the event bus, refresh tokens and login limits; empty keeps them in process / in the store")
	str(&c.AMQPURL, "amqp-url", "AMQP_URL", "", "RabbitMQ URL for the job queue; empty uses an in-process queue")
	str(&c.QueueName, "queue", "CODECRAFTER_QUEUE", "codecrafter.jobs", "RabbitMQ queue name (dead letters go to <name>.dead)")
	str(&c.RedisPrefix, "redis-prefix", "CODECRAFTER_REDIS_PREFIX", "codecrafter:", "prefix of every Redis key and channel")

	str(&c.JWTSecret, "jwt-secret", "CODECRAFTER_JWT_SECRET", "", "HMAC secret for access tokens (>= 32 bytes); in development a generated one is kept in the data dir")
	num(&c.Argon2MemoryKB, "argon2-memory-kib", "CODECRAFTER_ARGON2_MEMORY_KIB", int(auth.OWASPArgon2.MemoryKiB), "argon2id memory cost of password hashes, KiB (production: at least the OWASP 19456)")
	num(&c.Argon2Passes, "argon2-passes", "CODECRAFTER_ARGON2_PASSES", int(auth.OWASPArgon2.Iterations), "argon2id passes (production: at least the OWASP 2)")
	str(&c.AllowedOrigins, "allowed-origins", "CODECRAFTER_ALLOWED_ORIGINS", "", "comma-separated origins allowed for CORS and WebSockets (same-origin is always allowed)")
	boolean(&c.TrustProxy, "trust-proxy", "CODECRAFTER_TRUST_PROXY", false, "the same as -trusted-proxies 1")
	num(&c.TrustedProxies, "trusted-proxies", "CODECRAFTER_TRUSTED_PROXIES", 0, "how many proxies you run in front of serve, each appending to X-Forwarded-For: the client address is the hop the outermost one appended (0: the connection's peer)")
	str(&c.Introspection, "introspection", "CODECRAFTER_INTROSPECTION", "auto", "GraphQL introspection and suggestions: auto (on in development), on or off")
	c.GraphiQL = autoBool(envOr("CODECRAFTER_GRAPHIQL", ""))
	fs.Var(&c.GraphiQL, "graphiql", "serve GraphiQL at /graphiql: true or false (default: true in development, false in production)"+envHelp("CODECRAFTER_GRAPHIQL"))

	num(&c.LoginMaxPerAccount, "login-max-per-account", "CODECRAFTER_LOGIN_MAX_PER_ACCOUNT", 5, "failed logins per account per window before RATE_LIMITED")
	num(&c.LoginMaxPerAddr, "login-max-per-addr", "CODECRAFTER_LOGIN_MAX_PER_ADDR", 30, "failed logins per client address per window before RATE_LIMITED")
	dur(&c.LoginWindow, "login-window", "CODECRAFTER_LOGIN_WINDOW", 15*time.Minute, "window of the failed-login limits")
	num(&c.RegisterMaxPerAddr, "register-max-per-addr", "CODECRAFTER_REGISTER_MAX_PER_ADDR", 20, "registrations per client address per window before RATE_LIMITED")
	dur(&c.RegisterWindow, "register-window", "CODECRAFTER_REGISTER_WINDOW", time.Hour, "window of the registration limit")

	str(&c.Worker, "worker", "CODECRAFTER_WORKER", "auto", "run the execution worker inside serve: auto (when no AMQP_URL), on or off")
	str(&c.MetricsAddr, "metrics-addr", "CODECRAFTER_METRICS_ADDR", "127.0.0.1:9091", "listen address of /metrics and /healthz, for serve and worker alike (never on -addr: keep it off the public network); empty: none")
	str(&c.ReplicaName, "replica-name", "CODECRAFTER_REPLICA_NAME", "", "name of this serve replica, sent as X-Codecrafter-Replica on every response (default: the hostname)")
	str(&c.WorkerID, "worker-id", "CODECRAFTER_WORKER_ID", "", "worker name in logs and the store (default: hostname-pid)")
	num(&c.WorkerConcurrency, "worker-concurrency", "CODECRAFTER_WORKER_CONCURRENCY", 4, "runs a worker executes at once")
	dur(&c.ShutdownGrace, "shutdown-grace", "CODECRAFTER_SHUTDOWN_GRACE", 20*time.Second, "on shutdown, how long in-flight runs may finish before they are requeued")

	str(&c.RuntimesFile, "runtimes", "CODECRAFTER_RUNTIMES", "", "runtimes registry file (YAML); empty uses the built-in ten languages")
	str(&c.SandboxInstance, "sandbox-instance", "CODECRAFTER_SANDBOX_INSTANCE", "", "label of this worker's sandbox containers, for operators (default: the hostname); a starting worker removes only containers whose worker is gone, whatever their label")
	str(&c.SandboxRuntime, "sandbox-runtime", "CODECRAFTER_SANDBOX_RUNTIME", "", "Docker OCI runtime for sandboxes: empty (crun when the engine has it registered, else the engine default, runc), runc, crun or runsc (gVisor)")
	num(&c.PoolSize, "pool-size", "CODECRAFTER_POOL_SIZE", -1, "warm containers kept for every language whatever the demand (the pools' floor); -1 keeps the defaults (one each for python and javascript)")
	str(&c.Pool, "pool", "CODECRAFTER_POOL", "", "warm containers per language, e.g. python=2,javascript=1,go=1 (after -pool-size)")
	num(&c.PoolMax, "pool-max", "CODECRAFTER_POOL_MAX", 0, "largest warm pool of a language, sized by its recent runs above the -pool floor (0: 16, none under runsc; -1: only the floors)")
	num(&c.PoolMemoryMB, "pool-memory-mb", "CODECRAFTER_POOL_MEMORY_MB", 512, "memory budget of all warm containers, each counted at 16 MiB")
	dur(&c.PoolIdle, "pool-idle", "CODECRAFTER_POOL_IDLE", 10*time.Minute, "a language's pool shrinks to its floor this long after its last run")
	num(&c.SandboxStarts, "sandbox-starts", "CODECRAFTER_SANDBOX_STARTS", 0, "sandbox containers being started at once (0: twice the CPUs)")
	dur(&c.DefaultTimeLimit, "time-limit", "CODECRAFTER_TIME_LIMIT", 5*time.Second, "default wall-clock limit of a run")
	dur(&c.MaxTimeLimit, "max-time-limit", "CODECRAFTER_MAX_TIME_LIMIT", 30*time.Second, "largest wall-clock limit a run may ask for")
	num(&c.DefaultMemoryMB, "memory-limit-mb", "CODECRAFTER_MEMORY_LIMIT_MB", 256, "default memory limit of a run, MiB")
	num(&c.MaxMemoryMB, "max-memory-limit-mb", "CODECRAFTER_MAX_MEMORY_LIMIT_MB", 1024, "largest memory limit a run may ask for, MiB")
	num(&c.OutputLimitKB, "output-limit-kb", "CODECRAFTER_OUTPUT_LIMIT_KB", 1024, "stdout+stderr a run may print before OUTPUT_LIMIT, KiB")
	num(&c.MaxActiveRuns, "max-active-runs", "CODECRAFTER_MAX_ACTIVE_RUNS", 64, "queued plus running runs a user may have; more are RATE_LIMITED")
	num(&c.RunsPerMinute, "runs-per-minute", "CODECRAFTER_RUNS_PER_MINUTE", 120, "runs a user may request per minute on each API replica; more are RATE_LIMITED")
	num(&c.ChatPerMinute, "chat-per-minute", "CODECRAFTER_CHAT_PER_MINUTE", 60, "chat messages a user may send per minute; more are RATE_LIMITED")
	num(&c.GCPercent, "gc-percent", "CODECRAFTER_GC_PERCENT", 100, "the Go GC's heap growth target in percent (GOGC; the environment's GOGC wins): lower keeps less memory per idle socket for more GC work under load")
	num(&c.WSPerUser, "ws-max-per-user", "CODECRAFTER_WS_MAX_PER_USER", server.DefaultWebSocketsPerUser, "WebSockets one user may hold open on each replica; more are closed with 4429")
	num(&c.WSConnectsPerMin, "ws-connects-per-minute", "CODECRAFTER_WS_CONNECTS_PER_MINUTE", server.DefaultWebSocketConnectsPerMinute, "new WebSockets a client address may open per minute on each replica; more get HTTP 429")
}

func (c *config) production() bool { return c.Env == "production" }

// introspection resolves the auto setting.
func (c *config) introspection() bool {
	switch c.Introspection {
	case "on", "true":
		return true
	case "off", "false":
		return false
	}
	return !c.production()
}

// graphiql resolves the unset setting: GraphiQL is a development tool.
func (c *config) graphiql() bool {
	on, err := strconv.ParseBool(string(c.GraphiQL))
	if err != nil { // unset (validate refuses anything else)
		return !c.production()
	}
	return on
}

// trustedProxies is -trusted-proxies, at least 1 with -trust-proxy.
func (c *config) trustedProxies() int {
	if c.TrustProxy {
		return max(c.TrustedProxies, 1)
	}
	return c.TrustedProxies
}

// autoBool is a boolean flag that remembers whether it was set ("").
type autoBool string

func (b *autoBool) String() string   { return string(*b) }
func (b *autoBool) IsBoolFlag() bool { return true }
func (b *autoBool) Set(v string) error {
	if _, err := strconv.ParseBool(v); err != nil && v != "" {
		return fmt.Errorf("%q is not true or false", v)
	}
	*b = autoBool(v)
	return nil
}

// runWorker resolves the auto setting: the in-process worker serves the
// in-process queue; with RabbitMQ, worker daemons do the work.
func (c *config) runWorker() bool {
	switch c.Worker {
	case "on", "true":
		return true
	case "off", "false":
		return false
	}
	return c.AMQPURL == ""
}

// validate checks the settings; cmd is "serve" or "worker" (the worker
// issues no tokens, so it needs no JWT secret).
func (c *config) validate(cmd string) error {
	if len(c.envErrs) > 0 {
		return errors.Join(c.envErrs...)
	}
	if _, err := c.pools(); err != nil {
		return err
	}
	switch {
	case c.Env != "development" && c.Env != "production":
		return fmt.Errorf("-env: %q is not development or production", c.Env)
	case cmd == "serve" && c.production() && c.JWTSecret == "":
		return fmt.Errorf("-jwt-secret (CODECRAFTER_JWT_SECRET) is required in production")
	case c.JWTSecret != "" && len(c.JWTSecret) < 32:
		return fmt.Errorf("-jwt-secret must be at least 32 bytes")
	case c.Argon2MemoryKB < 8 || c.Argon2Passes < 1:
		return fmt.Errorf("-argon2-memory-kib must be >= 8 and -argon2-passes >= 1")
	case c.production() && (c.Argon2MemoryKB < int(auth.OWASPArgon2.MemoryKiB) || c.Argon2Passes < int(auth.OWASPArgon2.Iterations)):
		return fmt.Errorf("production needs argon2id costs of at least OWASP's 19456 KiB and 2 passes")
	case c.TrustedProxies < 0:
		return fmt.Errorf("-trusted-proxies must be 0 or more")
	case c.GraphiQL != "" && !validBool(string(c.GraphiQL)):
		return fmt.Errorf("$CODECRAFTER_GRAPHIQL: %q is not true or false", c.GraphiQL)
	case c.WorkerConcurrency < 1:
		return fmt.Errorf("-worker-concurrency must be at least 1")
	case c.PoolMax < -1 || c.PoolMemoryMB < 0 || c.PoolIdle < 0 || c.SandboxStarts < 0:
		return fmt.Errorf("-pool-max must be -1 or more; -pool-memory-mb, -pool-idle and -sandbox-starts 0 or more")
	case c.DefaultTimeLimit <= 0 || c.DefaultTimeLimit > c.MaxTimeLimit:
		return fmt.Errorf("-time-limit must be in (0, -max-time-limit]")
	case c.DefaultMemoryMB <= 0 || c.DefaultMemoryMB > c.MaxMemoryMB:
		return fmt.Errorf("-memory-limit-mb must be in (0, -max-memory-limit-mb]")
	case c.MaxActiveRuns < 1 || c.RunsPerMinute < 1 || c.ChatPerMinute < 1 || c.WSConnectsPerMin < 1 || c.WSPerUser < 1:
		return fmt.Errorf("-max-active-runs, -runs-per-minute, -chat-per-minute, -ws-connects-per-minute and -ws-max-per-user must be at least 1")
	case c.GCPercent < 10:
		return fmt.Errorf("-gc-percent must be at least 10")
	}
	return nil
}

// pools returns the per-language pool sizes set by -pool.
func (c *config) pools() (map[string]int, error) {
	out := map[string]int{}
	for _, kv := range strings.Split(c.Pool, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		lang, n, ok := strings.Cut(kv, "=")
		size, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil || size < 0 {
			return nil, fmt.Errorf("-pool: %q is not language=count", kv)
		}
		out[strings.TrimSpace(lang)] = size
	}
	return out, nil
}

func (c *config) origins() []string {
	var out []string
	for _, o := range strings.Split(c.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

func validBool(s string) bool { _, err := strconv.ParseBool(s); return err == nil }

func envHelp(env string) string { return " [$" + env + "]" }

func envOr(env, def string) string {
	if v, ok := os.LookupEnv(env); ok {
		return v
	}
	return def
}

// envParse returns the parsed environment variable, or def when it is
// unset; an unparsable value is recorded for validate to report.
func envParse[T any](c *config, env string, def T, parse func(string) (T, error)) T {
	raw, ok := os.LookupEnv(env)
	if !ok || raw == "" {
		return def
	}
	v, err := parse(raw)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("$%s: %q: %v", env, raw, err))
		return def
	}
	return v
}
