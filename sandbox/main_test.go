package sandbox_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/codecrafter/codecrafter/internal/testenv"
	"github.com/codecrafter/codecrafter/sandbox"
)

// TestMain makes sure the runtime images are current before the Docker
// tests run: BuildImages skips current images in a few seconds and
// builds missing ones (~4 min from scratch on 2 cores, needs root).
func TestMain(m *testing.M) {
	if err := ensureImages(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		// Every runner was closed: no goroutine (pool filler, container
		// wait, timer) may outlive it.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func ensureImages() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if exec.CommandContext(ctx, "docker", "info").Run() != nil {
		return nil // the tests themselves skip (or fail under CI) via testenv.Docker
	}
	if os.Getenv("CODECRAFTER_SANDBOX_NO_BUILD") == "1" {
		return nil // images are managed by hand (e.g. loaded into another engine)
	}
	var progress bytes.Buffer
	start := time.Now()
	if err := sandbox.BuildImages(ctx, sandbox.BuildOptions{}, &progress); err != nil {
		return fmt.Errorf("sandbox tests need the runtime images and building them failed "+
			"(run `make images` as root, with debootstrap installed and the Debian mirror reachable): %v\n%s", err, progress.Bytes())
	}
	if d := time.Since(start); d > 20*time.Second || testenv.CI() {
		fmt.Fprintf(os.Stderr, "sandbox: images checked/built in %s\n", d.Round(time.Second))
	}
	return nil
}
