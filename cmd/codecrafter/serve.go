package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/codecrafter/codecrafter/worker"
)

// serve runs the API (and, per config, the worker) until ctx ends, then
// shuts down: WebSockets close, HTTP drains, in-flight runs finish or are
// requeued, adapters close.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	if os.Getenv("GOGC") == "" {
		// Most of a realtime server's heap is its sockets' long-lived
		// state, to which GOGC adds as much again in headroom.
		debug.SetGCPercent(cfg.GCPercent)
	}
	a, err := newApp(ctx, cfg, log, true, cfg.runWorker())
	if err != nil {
		return err
	}
	defer a.close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		stop, err := serveMetrics(cfg.MetricsAddr, a.server.MetricsHandler(), log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stop()
	}
	// An undocumented profiling listener, for benchmarks (bench fanout).
	if addr := os.Getenv("CODECRAFTER_PPROF_ADDR"); addr != "" {
		runtime.MemProfileRate = 4096 // fine-grained heap profiles
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		stop, err := serveMetrics(addr, mux, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stop()
	}
	return a.serve(ctx, ln)
}

// serveMetrics serves /metrics and /healthz on a listener of their own
// until stop is called.
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	log.Info("metrics", "addr", "http://"+ln.Addr().String())
	return func() { srv.Close(); <-done }, nil
}

// serve runs a's HTTP server on ln and its worker until ctx ends.
func (a *app) serve(ctx context.Context, ln net.Listener) error {
	srv := a.server.HTTPServer(ln.Addr().String())
	var wg sync.WaitGroup
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	if a.worker != nil {
		if a.cfg.AMQPURL == "" {
			if _, err := worker.RequeuePending(ctx, a.db, a.queue, a.log); err != nil {
				return fmt.Errorf("requeueing pending runs: %w", err)
			}
		}
		wg.Go(func() {
			if err := a.worker.Run(workerCtx); err != nil {
				a.log.Error("worker stopped", "err", err)
			}
		})
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("serving", "addr", "http://"+ln.Addr().String(), "open", browseURL(ln.Addr()), "env", a.cfg.Env,
		"worker", a.worker != nil, "graphiql", a.cfg.graphiql())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.log.Info("shutting down")
	a.server.Shutdown()
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		a.log.Warn("http shutdown", "err", err)
	}
	stopWorker()
	wg.Wait()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("http: %w", serveErr)
	}
	return nil
}

// workerMain runs the worker daemon alone.
func workerMain(ctx context.Context, cfg config, log *slog.Logger) error {
	if cfg.MongoURI == "" || cfg.RedisURL == "" || cfg.AMQPURL == "" {
		return errors.New("the worker daemon needs MONGO_URI, REDIS_URL and AMQP_URL (in embedded mode serve runs the worker itself)")
	}
	a, err := newApp(ctx, cfg, log, false, true)
	if err != nil {
		return err
	}
	defer a.close()
	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
		stop, err := serveMetrics(cfg.MetricsAddr, mux, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	return a.worker.Run(ctx)
}

// health exits 0 when a server's /readyz answers 200 (container checks).
func health(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "readiness URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s %s", *url, resp.Status, body)
	}
	return nil
}

// browseURL is where a browser on this machine opens the web client: a
// listener on every interface is reached at localhost.
func browseURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}
