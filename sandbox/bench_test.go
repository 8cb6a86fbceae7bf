package sandbox_test

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
	"github.com/codecrafter/codecrafter/sandbox"
)

// BenchmarkPythonHello compares ways to run print('hello') in the python
// image: through the runner with a warm pool and with a fresh container,
// `docker run --rm` with the same hardening, and `docker exec` into a
// running container.
//
//	go test -run '^$' -bench PythonHello -benchtime 20x ./sandbox/
func BenchmarkPythonHello(b *testing.B) {
	const code = "print('hello')"
	req := codecrafter.RunRequest{Language: "python", Code: code}
	check := func(b *testing.B, res *codecrafter.RunResult) {
		if res.Status != codecrafter.StatusSucceeded || res.Stdout != "hello\n" {
			b.Fatalf("got %s", describe(res))
		}
	}

	b.Run("runner-warm-pool", func(b *testing.B) {
		d, _ := newRunner(b, sandbox.Config{Pool: map[string]int{"python": 1}})
		for b.Loop() {
			b.StopTimer() // the replacement is made in the background between runs
			waitFor(b, "a pooled container", func() bool { return d.PoolReady("python") == 1 })
			b.StartTimer()
			check(b, run(b, d, req))
		}
	})
	b.Run("runner-fresh-container", func(b *testing.B) {
		d, _ := newRunner(b, sandbox.Config{})
		for b.Loop() {
			check(b, run(b, d, req))
		}
	})
	b.Run("docker-run-cli", func(b *testing.B) {
		testenv.Docker(b)
		args := []string{"run", "--rm", "-i", "--network", "none", "--read-only", "--tmpfs", "/box:exec,size=64m",
			"--user", "65534:65534", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "64",
			"--memory", "256m", "--memory-swap", "256m", "--cpus", "1", "--init", "--log-driver", "none",
			"--entrypoint", "python3", "codecrafter/python", "-c", code}
		for b.Loop() {
			out, err := exec.Command("docker", args...).Output()
			if err != nil || string(out) != "hello\n" {
				b.Fatalf("docker run: %q %v", out, err)
			}
		}
	})
	b.Run("docker-exec", func(b *testing.B) {
		testenv.Docker(b)
		ctx := context.Background()
		cli, err := client.New(client.FromEnv)
		if err != nil {
			b.Fatal(err)
		}
		defer cli.Close()
		c, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Config:     &container.Config{Image: "codecrafter/python", Entrypoint: []string{"sleep", "infinity"}, User: "65534:65534"},
			HostConfig: &container.HostConfig{NetworkMode: "none", ReadonlyRootfs: true, CapDrop: []string{"ALL"}, Init: ptr(true)},
		})
		if err != nil {
			b.Fatal(err)
		}
		defer cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		if _, err := cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			ex, err := cli.ExecCreate(ctx, c.ID, client.ExecCreateOptions{AttachStdout: true, AttachStderr: true, Cmd: []string{"python3", "-c", code}})
			if err != nil {
				b.Fatal(err)
			}
			att, err := cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
			if err != nil {
				b.Fatal(err)
			}
			out, _ := io.ReadAll(att.Reader)
			att.Close()
			ins, err := cli.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
			if err != nil || ins.ExitCode != 0 || !strings.Contains(string(out), "hello") {
				b.Fatalf("exec: %q %+v %v", out, ins, err)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }
