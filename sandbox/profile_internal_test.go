package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

// BenchmarkDrainedPoolPhases times each engine step of a python hello run
// in a fresh container, as a run that finds the pool empty pays them, and
// the engine's CPU per container (dockerd, containerd, and every shim with
// the runc processes it reaped; the shims' parent never reaps them here,
// so an exited shim's CPU is still readable). Beside it, the same run in a
// box started a while before (ccbox already waiting): the difference is
// ccbox's own start.
//
//	go test -run '^$' -bench DrainedPoolPhases -benchtime 30x ./sandbox/
//	CODECRAFTER_SANDBOX_RUNTIME=runc go test ...   (the OCI runtime; default the runner's)
func BenchmarkDrainedPoolPhases(b *testing.B) {
	testenv.Docker(b)
	ctx := context.Background()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		b.Fatal(err)
	}
	d, err := newDocker(ctx, cli, Config{Instance: "profile-" + codecrafter.RandomToken(4), Pool: map[string]int{},
		OCIRuntime: os.Getenv("CODECRAFTER_SANDBOX_RUNTIME")}, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	l, _ := d.reg.Language("python")
	lim := d.cfg.limitsFor(l, 0, 0)
	req := codecrafter.RunRequest{Language: "python", Code: "print('hello')"}
	phases := map[string][]time.Duration{}
	order := []string{"create", "attach", "start", "wait-call", "run-fresh", "remove", "run-settled", "total-fresh"}
	step := func(name string, start time.Time) time.Time {
		now := time.Now()
		phases[name] = append(phases[name], now.Sub(start))
		return now
	}
	runBox := func(bx *box) {
		r := &run{d: d, b: bx, lim: lim, out: func(codecrafter.OutputStream, []byte) {}}
		res, err := r.execute(ctx, d.job(l, lim, req))
		if err != nil || res.Status != codecrafter.StatusSucceeded {
			b.Fatalf("run: %v %+v", err, res)
		}
	}
	cpu0, n := engineCPU(), 0
	for b.Loop() {
		n++
		t0 := time.Now()
		created, err := cli.ContainerCreate(ctx, d.createOptions(l, lim.memoryMB, d.Runtime()))
		if err != nil {
			b.Fatal(err)
		}
		t := step("create", t0)
		bx := &box{id: created.ID, lang: l, memoryMB: lim.memoryMB}
		att, err := cli.ContainerAttach(ctx, bx.id, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			b.Fatal(err)
		}
		bx.conn, bx.out = att.HijackedResponse, newDemux(att.Reader)
		t = step("attach", t)
		if _, err := cli.ContainerStart(ctx, bx.id, client.ContainerStartOptions{}); err != nil {
			b.Fatal(err)
		}
		t = step("start", t)
		bx.waited = cli.ContainerWait(ctx, bx.id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
		t = step("wait-call", t)
		runBox(bx)
		t = step("run-fresh", t)
		d.remove(bx)
		step("remove", t)
		step("total-fresh", t0)
	}
	cpu := engineCPU() - cpu0
	// The same run in a box whose ccbox had time to start.
	for range n {
		bx, err := d.startBox(ctx, l, lim.memoryMB)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // a benchmark, not a test: let ccbox settle
		t := time.Now()
		runBox(bx)
		step("run-settled", t)
		d.remove(bx)
	}
	for _, name := range order {
		s := slices.Sorted(slices.Values(phases[name]))
		b.ReportMetric(float64(s[len(s)/2].Microseconds())/1000, name+"-p50-ms")
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(n), "engine-cpu-ms/container")
	b.ReportMetric(0, "ns/op")
}

// engineCPU sums the CPU time of dockerd, containerd and every
// containerd-shim (alive or a zombie), with their reaped children.
func engineCPU() time.Duration {
	var ticks int64
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		comm, err := os.ReadFile(dir + "/comm")
		if err != nil {
			continue
		}
		switch c := strings.TrimSpace(string(comm)); {
		case c == "dockerd", c == "containerd", strings.HasPrefix(c, "containerd-shim"):
		default:
			continue
		}
		stat, err := os.ReadFile(dir + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += v
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ 100
}
