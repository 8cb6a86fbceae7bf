package sandbox

import (
	"fmt"
	"runtime"
	"time"
)

// Config tunes the Docker runner. Zero fields take DefaultConfig's values.
type Config struct {
	// Instance names this runner in container labels, for operators. It
	// does not decide what the start-up sweep removes (owner.go): runners
	// sharing an engine, even under one name, never remove each other's
	// containers.
	Instance string
	// OCIRuntime selects the engine's runtime: "" = crun when the engine
	// has it registered (falling back to the engine's runc if it cannot
	// start a box), else the engine's default; "runc", "crun", or "runsc"
	// for gVisor once registered in daemon.json.
	OCIRuntime string

	DefaultTimeLimit time.Duration // run step, when the request has none
	MaxTimeLimit     time.Duration // requests above are capped
	CompileTimeLimit time.Duration // compile step
	DefaultMemoryMB  int           // when the request has none; also the pool's
	MaxMemoryMB      int           // requests above are capped
	OutputLimit      int           // bytes of stdout+stderr before OUTPUT_LIMIT
	CompileOutput    int           // bytes of compiler output kept
	PidsLimit        int64         // processes and threads in a box (default 64; 256 under runsc)
	TmpfsMB          int           // size of /box (exec) and of /tmp (noexec) each
	CPUs             float64       // CPU quota of a box
	NoFile           int64         // open files per process
	// Pool is the floor of each language's warm pool: started containers
	// that wait whatever the demand. Above it every language's pool
	// follows its recent runs (demand.go), up to PoolMax, and shrinks back
	// to the floor when nobody ran it for PoolIdle. The default keeps one
	// warm for python and javascript, the languages people run most and
	// whose runs are short enough that container start-up dominates; the
	// others start cold and shrink to zero.
	Pool map[string]int
	// PoolMax caps a language's pool (default 16; under runsc the
	// default is no demand-sized pools, see withDefaults); -1: only the
	// floors of Pool wait, none grows with demand.
	PoolMax int
	// PoolMemoryMB is the budget of all pools' waiting containers,
	// counted at poolBoxMB each (default 512: 32 containers): no pool
	// grows past it with demand, but the floors are kept anyway.
	PoolMemoryMB int
	// PoolIdle is how long a language's pool keeps its demand-sized
	// containers after its last run (default 10 min).
	PoolIdle time.Duration
	// Starts bounds the containers being started at once, for pools and
	// runs alike (default twice the CPUs: a start mostly waits on the
	// engine's processes, but past that they only slow each other down).
	Starts int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Instance:         "default",
		DefaultTimeLimit: 5 * time.Second,
		MaxTimeLimit:     30 * time.Second,
		CompileTimeLimit: 30 * time.Second,
		DefaultMemoryMB:  256,
		MaxMemoryMB:      1024,
		OutputLimit:      1 << 20,
		CompileOutput:    64 << 10,
		PidsLimit:        64,
		TmpfsMB:          64,
		CPUs:             1,
		NoFile:           256,
		Pool:             map[string]int{"python": 1, "javascript": 1},
		PoolMax:          16,
		PoolMemoryMB:     512,
		PoolIdle:         10 * time.Minute,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	if c.Instance == "" {
		c.Instance = d.Instance
	}
	if c.DefaultTimeLimit == 0 {
		c.DefaultTimeLimit = d.DefaultTimeLimit
	}
	if c.MaxTimeLimit == 0 {
		c.MaxTimeLimit = d.MaxTimeLimit
	}
	if c.CompileTimeLimit == 0 {
		c.CompileTimeLimit = d.CompileTimeLimit
	}
	set(&c.DefaultMemoryMB, d.DefaultMemoryMB)
	set(&c.MaxMemoryMB, d.MaxMemoryMB)
	set(&c.OutputLimit, d.OutputLimit)
	set(&c.CompileOutput, d.CompileOutput)
	set(&c.TmpfsMB, d.TmpfsMB)
	if c.PidsLimit == 0 {
		c.PidsLimit = d.PidsLimit
		if c.OCIRuntime == "runsc" {
			// gVisor's own sentry and gofer threads count against the
			// container's pids cgroup: 64 starves them.
			c.PidsLimit = 256
		}
	}
	if c.CPUs == 0 {
		c.CPUs = d.CPUs
	}
	if c.NoFile == 0 {
		c.NoFile = d.NoFile
	}
	if c.Pool == nil {
		c.Pool = d.Pool
	}
	switch {
	case c.PoolMax == 0 && c.OCIRuntime == "runsc":
		// An idle gVisor sandbox costs far more than a runc box (its
		// sentry's memory, and disk: TestGVisor saw ~300 MB for a few
		// waiting ones), so under runsc only the floors wait unless
		// PoolMax is set.
	case c.PoolMax == 0:
		c.PoolMax = d.PoolMax
	case c.PoolMax < 0:
		c.PoolMax = 0
	}
	set(&c.PoolMemoryMB, d.PoolMemoryMB)
	set(&c.Starts, 2*runtime.NumCPU())
	if c.PoolIdle <= 0 {
		c.PoolIdle = d.PoolIdle
	}
	return c
}

func (c Config) validate(reg *Registry) error {
	switch {
	case c.DefaultTimeLimit > c.MaxTimeLimit:
		return fmt.Errorf("sandbox: default time limit %s above the maximum %s", c.DefaultTimeLimit, c.MaxTimeLimit)
	case c.DefaultMemoryMB > c.MaxMemoryMB:
		return fmt.Errorf("sandbox: default memory %d MB above the maximum %d MB", c.DefaultMemoryMB, c.MaxMemoryMB)
	case c.DefaultMemoryMB < 16:
		return fmt.Errorf("sandbox: memory limit %d MB is too small", c.DefaultMemoryMB)
	case c.PidsLimit < 8 || c.CPUs <= 0 || c.TmpfsMB < 1 || c.OutputLimit < 1:
		return fmt.Errorf("sandbox: pids limit, CPUs, tmpfs size and output limit must be positive")
	}
	for id, n := range c.Pool {
		if _, ok := reg.Language(id); !ok || n < 0 {
			return fmt.Errorf("sandbox: pool size %d for unknown language %q", n, id)
		}
	}
	return nil
}

// limits are the resolved limits of one run.
type limits struct {
	time     time.Duration
	memoryMB int
}

// limitsFor applies defaults, the language's floor and the maximums.
func (c Config) limitsFor(l *Language, timeLimit time.Duration, memoryMB int) limits {
	if timeLimit <= 0 {
		timeLimit = c.DefaultTimeLimit
	}
	if memoryMB <= 0 {
		memoryMB = c.DefaultMemoryMB
	}
	memoryMB = max(memoryMB, l.MinMemoryMB)
	return limits{time: min(timeLimit, c.MaxTimeLimit), memoryMB: min(memoryMB, c.MaxMemoryMB)}
}
