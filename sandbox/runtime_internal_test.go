package sandbox

import (
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

func TestChooseRuntime(t *testing.T) {
	for _, c := range []struct {
		configured string
		registered []string
		want       string
		auto       bool
	}{
		{"", []string{"runc", "crun", "runsc"}, "crun", true},
		{"", []string{"runc", "runsc"}, "runc", false}, // crun not registered: the engine's default
		{"runc", []string{"runc", "crun"}, "runc", false},
		{"runsc", []string{"runc", "crun", "runsc"}, "runsc", false},
	} {
		got, auto := chooseRuntime(c.configured, c.registered, "runc")
		if got != c.want || auto != c.auto {
			t.Errorf("chooseRuntime(%q, %v) = %q, %v; want %q, %v", c.configured, c.registered, got, auto, c.want, c.auto)
		}
	}
}

// TestRuntimeFallback: an automatically chosen runtime that cannot start
// a box (here one the engine does not know) gives way to the engine's
// default, and the run still works.
func TestRuntimeFallback(t *testing.T) {
	testenv.Docker(t)
	ctx := testenv.Context(t, 2*time.Minute)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDocker(ctx, cli, Config{Instance: "test-" + codecrafter.NewID(), Pool: map[string]int{}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if !memcgRuntime(d.engineDefault) {
		// scripts/services.sh leaves the engine's default at runc.
		testenv.Missing(t, "an engine whose default runtime is runc (it is %q): no fallback to test", d.engineDefault)
	}
	d.rt.Store(&runtimeChoice{name: "no-such-runtime-" + codecrafter.RandomToken(4), auto: true})
	var used string
	d.onAcquire = func(id string) {
		info, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		used = info.Container.HostConfig.Runtime
	}
	res, err := d.Run(ctx, codecrafter.RunRequest{Language: "python", Code: "print('hi')"}, nil)
	if err != nil || res.Status != codecrafter.StatusSucceeded {
		t.Fatalf("run: %v %+v", err, res)
	}
	if d.Runtime() != d.engineDefault || used != d.engineDefault {
		t.Errorf("runtime after the failure %q, the box's %q; want the engine's default %q", d.Runtime(), used, d.engineDefault)
	}
}
