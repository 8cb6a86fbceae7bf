package dockerproxy_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/dockerproxy"
	"github.com/codecrafter/codecrafter/internal/testenv"
	"github.com/codecrafter/codecrafter/sandbox"
)

// TestSandboxThroughProxy: the real sandbox runner, on the real engine,
// works through the proxy alone (every call it makes is allowed), and the
// docker CLI through it sees no container of anyone else's and can start
// none of its own.
func TestSandboxThroughProxy(t *testing.T) {
	testenv.Docker(t)
	upstream := "unix:///var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		upstream = h
	}
	p, err := dockerproxy.New(dockerproxy.Config{
		Upstream: upstream, Label: sandbox.LabelInstance, ImagePrefixes: []string{"codecrafter/"},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	proxyHost := "tcp://" + strings.TrimPrefix(srv.URL, "http://")
	t.Setenv("DOCKER_HOST", proxyHost)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := sandbox.DefaultConfig()
	cfg.Instance = "dockerproxy-test"
	cfg.Pool = map[string]int{"python": 1} // the pool's create/start/attach/update too
	d, err := sandbox.NewDocker(ctx, cfg, sandbox.DefaultRuntimes(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("sandbox through the proxy: %v", err)
	}
	defer d.Close()
	var streamed strings.Builder
	for _, mem := range []int{0, 128} { // 128: a pooled box is resized (update)
		streamed.Reset()
		res, err := d.Run(ctx, codecrafter.RunRequest{
			Language: "python", Code: "import sys\nprint(sys.stdin.read().upper())", Stdin: "through the proxy", MemoryLimitMB: mem,
		}, func(_ codecrafter.OutputStream, data []byte) { streamed.Write(data) })
		if err != nil {
			t.Fatalf("run (memory %d): %v", mem, err)
		}
		if res.Status != codecrafter.StatusSucceeded || res.Stdout != "THROUGH THE PROXY\n" || streamed.String() != res.Stdout {
			t.Errorf("run (memory %d): %s stdout %q streamed %q stderr %q", mem, res.Status, res.Stdout, streamed.String(), res.Stderr)
		}
	}

	// A container of someone else's: invisible and untouchable.
	if _, err := exec.LookPath("docker"); err != nil {
		return
	}
	cli := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "docker", args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+proxyHost)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	direct := exec.CommandContext(ctx, "docker", "create", "--label", "app=other", "codecrafter/base:"+baseTag(t, ctx), "true")
	direct.Env = append(os.Environ(), "DOCKER_HOST="+upstream)
	out, err := direct.Output()
	if err != nil {
		t.Fatalf("docker create (direct): %v", err)
	}
	other := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		rm := exec.Command("docker", "rm", "-f", other)
		rm.Env = direct.Env
		_ = rm.Run()
	})
	if out, _ := cli("ps", "-aq", "--no-trunc"); strings.Contains(out, other) {
		t.Errorf("docker ps through the proxy lists an unlabelled container")
	}
	for _, args := range [][]string{{"start", other}, {"rm", "-f", other}, {"run", "--rm", "codecrafter/python", "true"}, {"exec", other, "true"}} {
		if out, err := cli(args...); err == nil {
			t.Errorf("docker %v through the proxy: allowed (%s)", args, out)
		}
	}
}

func baseTag(t *testing.T, ctx context.Context) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "docker", "images", "codecrafter/base", "--format", "{{.Tag}}")
	cmd.Env = append(os.Environ(), "DOCKER_HOST=")
	out, err := cmd.Output()
	tag, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil || tag == "" {
		testenv.Missing(t, "the codecrafter/base image (make images builds it)")
	}
	return tag
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
