// Command codecrafter is the CodeCrafter server, worker daemon and
// operator tools. It only wires: configuration, adapters, services.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/lmittmann/tint"
)

const usage = `codecrafter: collaborative code execution over GraphQL.

Usage:
  codecrafter serve [flags]         the API server (with no external services
                                    configured it also runs the worker)
  codecrafter worker [flags]        the execution worker daemon alone
                                    (needs MONGO_URI, REDIS_URL, AMQP_URL)
  codecrafter images build [flags]  build the sandbox images locally
  codecrafter images list           the runtimes and their images
  codecrafter store [flags]         the embedded MongoDB-wire store alone, on TCP
                                    (for serve and worker processes to share)
  codecrafter docker-proxy [flags]  a Docker API proxy that lets through only
                                    the sandbox's calls (for the worker)
  codecrafter health [-url URL]     exit 0 when a server's /readyz answers 200
  codecrafter bench fanout [flags]  chat fan-out benchmark against a raw broadcast
  codecrafter bench runs [flags]    runs under load (back to back, burst, many users) vs docker run --rm

Settings (flags, each with an environment fallback in brackets):
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "codecrafter:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stdout)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve", "worker":
		var cfg config
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		fs.SetOutput(stderr)
		cfg.bind(fs)
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if err := cfg.validate(cmd); err != nil {
			return err
		}
		logger, err := newLogger(cfg.LogLevel, cfg.LogFormat, stderr)
		if err != nil {
			return err
		}
		if cmd == "serve" {
			return serve(ctx, cfg, logger)
		}
		return workerMain(ctx, cfg, logger)
	case "images":
		return images(ctx, rest, stdout, stderr)
	case "health":
		return health(ctx, rest, stderr)
	case "store":
		return storeMain(ctx, rest, stderr)
	case "docker-proxy":
		return dockerProxyMain(ctx, rest, stderr)
	case "bench":
		return bench(ctx, rest, stdout, stderr)
	default:
		printUsage(stderr)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, usage)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(w)
	new(config).bind(fs)
	fs.PrintDefaults()
}

// newLogger returns a tint (colour text) logger on a terminal and a JSON
// one otherwise, unless format forces one.
func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %v", err)
	}
	switch format {
	case "auto":
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			format = "text"
		} else {
			format = "json"
		}
	case "text", "json":
	default:
		return nil, fmt.Errorf("-log-format: %q is not auto, text or json", format)
	}
	if format == "text" {
		return slog.New(ctxHandler{tint.NewHandler(w, &tint.Options{Level: lvl, TimeFormat: "15:04:05.000"})}), nil
	}
	return slog.New(ctxHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})}), nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
