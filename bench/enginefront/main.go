// Command enginefront measures what a container's whole life costs the
// machine through dockerd and through containerd alone, in one process:
// create, start, a python line, wait, remove, n in sequence, both under
// crun with the default seccomp profile, a read-only root, no network
// (dockerd told NetworkDisabled, as the sandbox does, so that libnetwork
// makes no namespace of its own; crun makes one either way) and the same
// pids and memory limits. It measured whether a sandbox on containerd's
// API would pay (BENCHMARKS.md, session 11: it would not); it is not the
// sandbox's code.
//
//	docker save codecrafter/python | CONTAINERD_ADDRESS=/var/run/docker/containerd/containerd.sock \
//	  ctr -n ccbench images import -
//	cd bench/enginefront && go run . -n 40 -rounds 3
//
// A separate module, so the containerd client stays out of the project's
// dependencies. Debian's crun 1.8.1 refuses the spec version the client
// writes (1.2), so the spec says 1.0.2-dev, as Docker 20.10's does.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/moby/moby/api/types/container"
	docker "github.com/moby/moby/client"
)

const memory = 128 << 20

var args = []string{"python3", "-c", "print(1)"}

func main() {
	n := flag.Int("n", 40, "containers per measure")
	rounds := flag.Int("rounds", 3, "measures of each, alternating")
	sock := flag.String("containerd", "/var/run/docker/containerd/containerd.sock", "containerd's socket (dockerd's own)")
	ns := flag.String("namespace", "ccbench", "containerd namespace holding docker.io/codecrafter/python:latest")
	flag.Parse()
	ctx := context.Background()

	dc, err := docker.New(docker.FromEnv)
	if err != nil {
		log.Fatal(err)
	}
	cc, err := client.New(*sock, client.WithDefaultNamespace(*ns))
	if err != nil {
		log.Fatal(err)
	}
	img, err := cc.GetImage(ctx, "docker.io/codecrafter/python:latest")
	if err != nil {
		log.Fatalf("%v (import it: see the comment at the top)", err)
	}
	ways := []struct {
		name string
		one  func(i int) error
	}{
		{"dockerd (Docker API)", func(int) error { return viaDocker(ctx, dc) }},
		{"containerd alone", func(i int) error { return viaContainerd(ctx, cc, img, i, false, args) }},
		{"containerd, one shim", func(i int) error { return viaContainerd(ctx, cc, img, i, true, args) }},
	}
	// The grouped shim lives while a task of its group does: an idle one
	// holds it, as a pool's waiting boxes would.
	actx, stopAnchor := context.WithCancel(ctx)
	anchor := make(chan error, 1)
	go func() { anchor <- viaContainerd(actx, cc, img, 1<<30, true, []string{"sleep", "infinity"}) }()
	defer func() {
		stopAnchor()
		if err := <-anchor; err != nil {
			log.Printf("the idle task: %v", err)
		}
	}()
	seq := 0
	for r := 0; r < *rounds; r++ {
		cost := make([]float64, len(ways))
		for w, way := range ways {
			if err := way.one(seq); err != nil { // warm up
				log.Fatalf("%s: %v", way.name, err)
			}
			seq++
			b0, s0, t0 := busy(), self(), time.Now()
			for range *n {
				if err := way.one(seq); err != nil {
					log.Fatalf("%s: %v", way.name, err)
				}
				seq++
			}
			cost[w] = float64(busy()-b0) / float64(*n)
			fmt.Printf("%-22s machine CPU %6.1f ms a container (this process %4.1f ms), wall %6.1f ms\n", way.name, cost[w],
				float64(self()-s0)/float64(time.Millisecond)/float64(*n), float64(time.Since(t0).Milliseconds())/float64(*n))
		}
		fmt.Printf("round %d: to dockerd, containerd alone %.2f, with one shim %.2f\n", r+1, cost[1]/cost[0], cost[2]/cost[0])
	}
}

func viaDocker(ctx context.Context, cli *docker.Client) error {
	pids := int64(64)
	c, err := cli.ContainerCreate(ctx, docker.ContainerCreateOptions{
		Config: &container.Config{Image: "codecrafter/python", Entrypoint: args, NetworkDisabled: true}, // no libnetwork sandbox, as the sandbox does
		HostConfig: &container.HostConfig{NetworkMode: "none", ReadonlyRootfs: true, Runtime: "crun",
			SecurityOpt: []string{"no-new-privileges"}, LogConfig: container.LogConfig{Type: "none"},
			Resources: container.Resources{PidsLimit: &pids, Memory: memory}},
	})
	if err != nil {
		return err
	}
	// One removal, on every path (forced: an error can leave it running).
	defer cli.ContainerRemove(ctx, c.ID, docker.ContainerRemoveOptions{Force: true})
	w := cli.ContainerWait(ctx, c.ID, docker.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := cli.ContainerStart(ctx, c.ID, docker.ContainerStartOptions{}); err != nil {
		return err
	}
	select {
	case r := <-w.Result:
		if r.StatusCode != 0 {
			return fmt.Errorf("exit %d", r.StatusCode)
		}
	case err := <-w.Error:
		return err
	}
	return nil
}

// group is the runc shim's grouping annotation: the tasks that carry the
// same value share one shim process.
const group = "io.containerd.runc.v2.group"

func viaContainerd(ctx context.Context, cc *client.Client, img client.Image, i int, grouped bool, args []string) error {
	id := fmt.Sprintf("ef%d-%d", os.Getpid(), i)
	version := func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Version = "1.0.2-dev"
		if grouped {
			s.Annotations = map[string]string{group: fmt.Sprintf("ef%d", os.Getpid())}
		}
		return nil
	}
	ct, err := cc.NewContainer(ctx, id,
		client.WithNewSnapshot(id, img),
		client.WithRuntime("io.containerd.runc.v2", &options.Options{BinaryName: "/usr/bin/crun"}),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(args...), oci.WithRootFSReadonly(),
			seccomp.WithDefaultProfile(), oci.WithPidsLimit(64), oci.WithMemoryLimit(memory), oci.WithNoNewPrivileges, version),
	)
	if err != nil {
		return err
	}
	bg := context.WithoutCancel(ctx)
	defer ct.Delete(bg, client.WithSnapshotCleanup)
	t, err := ct.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, io.Discard, io.Discard)))
	if err != nil {
		return err
	}
	defer t.Delete(bg, client.WithProcessKill)
	exited, err := t.Wait(ctx)
	if err != nil {
		return err
	}
	if err := t.Start(ctx); err != nil {
		return err
	}
	select {
	case st := <-exited:
		if st.ExitCode() != 0 {
			return fmt.Errorf("exit %d", st.ExitCode())
		}
	case <-ctx.Done():
	}
	return nil
}

// busy is the machine's busy CPU time so far in ms (user, nice, system,
// irq, softirq of all cores; not idle, iowait or steal).
func busy() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		log.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return ticks * 1000 / 100 // USER_HZ is 100 on Linux
}

func self() time.Duration {
	var r syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r)
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}
