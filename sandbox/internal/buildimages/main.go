// Command buildimages builds the sandbox images (a development shortcut for
// `codecrafter images build`): go run ./sandbox/internal/buildimages [lang...]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/codecrafter/codecrafter/sandbox"
)

func main() {
	var opts sandbox.BuildOptions
	runtimes := flag.String("runtimes", "", "runtimes YAML file (default: built in)")
	flag.StringVar(&opts.CacheDir, "cache-dir", "", "debootstrap .deb cache")
	flag.StringVar(&opts.Helper, "ccbox", "", "prebuilt static ccbox binary (default: build it)")
	flag.IntVar(&opts.Parallel, "parallel", 2, "language images built at once")
	flag.BoolVar(&opts.Force, "force", false, "rebuild current images")
	flag.Parse()
	opts.Languages = flag.Args()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	reg, err := sandbox.LoadRuntimes(*runtimes)
	if err == nil {
		opts.Registry = reg
		err = sandbox.BuildImages(ctx, opts, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
