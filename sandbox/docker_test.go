package sandbox_test

import (
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
	"github.com/codecrafter/codecrafter/sandbox"
)

// newRunner starts a runner with its own instance label (unless cfg sets
// one) and no warm pool (unless cfg sets one); cleanup closes it and
// checks none of its containers is left.
func newRunner(t testing.TB, cfg sandbox.Config) (*sandbox.Docker, *prometheus.Registry) {
	t.Helper()
	testenv.Docker(t)
	if cfg.Instance == "" {
		cfg.Instance = "test-" + codecrafter.NewID()
	}
	if cfg.Pool == nil {
		cfg.Pool = map[string]int{}
	}
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := sandbox.NewDocker(testenv.Context(t, time.Minute), cfg, sandbox.DefaultRuntimes(), logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
		if ids := labelledWith(t, sandbox.LabelOwner, d.Owner()); len(ids) > 0 {
			t.Errorf("containers left after Close: %v", ids)
		}
	})
	return d, reg
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// labelled lists containers (any state) of a runner instance.
func labelled(t testing.TB, instance string) []string {
	t.Helper()
	return labelledWith(t, sandbox.LabelInstance, instance)
}

// labelledWith lists containers (any state) with a label, and other
// filters (docker ps --filter) if given.
func labelledWith(t testing.TB, label, value string, filters ...string) []string {
	t.Helper()
	args := []string{"ps", "-aq", "--no-trunc", "--filter", "label=" + label + "=" + value}
	for _, f := range filters {
		args = append(args, "--filter", f)
	}
	out, err := exec.Command("docker", args...).Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return strings.Fields(string(out))
}

// collector records streamed output.
type collector struct {
	mu     sync.Mutex
	stdout strings.Builder
	stderr strings.Builder
	chunks int
}

func (c *collector) out(s codecrafter.OutputStream, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.chunks++
	if s == codecrafter.Stdout {
		c.stdout.Write(p)
	} else {
		c.stderr.Write(p)
	}
}

func run(t testing.TB, d *sandbox.Docker, req codecrafter.RunRequest) *codecrafter.RunResult {
	t.Helper()
	var c collector
	res, err := d.Run(testenv.Context(t, 2*time.Minute), req, c.out)
	if err != nil {
		t.Fatalf("Run(%s): %v", req.Language, err)
	}
	if c.stdout.String() != res.Stdout || c.stderr.String() != res.Stderr {
		t.Errorf("streamed output differs from the result: streamed %q/%q, result %q/%q",
			c.stdout.String(), c.stderr.String(), res.Stdout, res.Stderr)
	}
	return res
}

func describe(res *codecrafter.RunResult) string {
	var b strings.Builder
	b.WriteString("status " + string(res.Status))
	if res.ExitCode != nil {
		b.WriteString(" exit " + itoa(*res.ExitCode))
	}
	b.WriteString("\nstdout: " + clip(res.Stdout) + "\nstderr: " + clip(res.Stderr))
	if res.CompileOutput != nil {
		b.WriteString("\ncompile: " + clip(*res.CompileOutput))
	}
	return b.String()
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

func itoa(i int) string { return strconv.Itoa(i) }

func execOutput(name string, args ...string) (string, error) {
	var stderr strings.Builder
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), err
}
