package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/codecrafter/codecrafter/sandbox"
)

// images builds the sandbox images locally (no registry needed) or lists
// the runtimes and the images they use.
func images(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "build" && args[0] != "list") {
		return errors.New("usage: codecrafter images build|list [flags]")
	}
	fs := flag.NewFlagSet("images "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	runtimesFile := fs.String("runtimes", envOr("CODECRAFTER_RUNTIMES", ""), "runtimes registry file; empty: the built-in languages [$CODECRAFTER_RUNTIMES]")
	ccbox := fs.String("ccbox", "", "static ccbox helper binary baked into the images; empty: built from source with the go command")
	langs := fs.String("languages", "", "comma-separated language ids to build; empty: all")
	force := fs.Bool("force", false, "rebuild images that are current")
	parallel := fs.Int("parallel", 2, "language images built at once")
	cacheDir := fs.String("cache-dir", "", "debootstrap package cache (default: the user cache dir)")
	mirror := fs.String("mirror", "", "Debian mirror (default http://deb.debian.org/debian)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	reg, err := sandbox.LoadRuntimes(*runtimesFile)
	if err != nil {
		return err
	}
	if args[0] == "list" {
		for _, l := range reg.Languages() {
			rt := l.Runtime()
			fmt.Fprintf(stdout, "%-12s %-12s %-10s %s\n", rt.Language, rt.Name, rt.Version, strings.Join(rt.Aliases, ","))
		}
		return nil
	}
	opts := sandbox.BuildOptions{
		Registry: reg, Helper: *ccbox, Force: *force, Parallel: *parallel,
		CacheDir: *cacheDir, Mirror: *mirror,
	}
	if *langs != "" {
		opts.Languages = strings.Split(*langs, ",")
	}
	return sandbox.BuildImages(ctx, opts, stdout)
}
