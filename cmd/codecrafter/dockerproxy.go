package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/codecrafter/codecrafter/dockerproxy"
	"github.com/codecrafter/codecrafter/sandbox"
)

// dockerProxyMain serves the filtering Docker API proxy the worker uses
// instead of the engine's socket (package dockerproxy says what passes).
func dockerProxyMain(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("docker-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("CODECRAFTER_DOCKER_PROXY_ADDR", "127.0.0.1:2375"), "listen address [$CODECRAFTER_DOCKER_PROXY_ADDR]")
	upstream := fs.String("upstream", envOr("CODECRAFTER_DOCKER_PROXY_UPSTREAM", "unix:///var/run/docker.sock"), "the engine [$CODECRAFTER_DOCKER_PROXY_UPSTREAM]")
	images := fs.String("images", envOr("CODECRAFTER_DOCKER_PROXY_IMAGES", "codecrafter/"), "comma-separated image prefixes clients may run [$CODECRAFTER_DOCKER_PROXY_IMAGES]")
	runtime := fs.String("runtime", envOr("CODECRAFTER_SANDBOX_RUNTIME", ""), "OCI runtime every container must use (runsc for gVisor; empty: the engine's default) [$CODECRAFTER_SANDBOX_RUNTIME]")
	logLevel := fs.String("log-level", envOr("CODECRAFTER_LOG_LEVEL", "info"), "debug, info, warn or error [$CODECRAFTER_LOG_LEVEL]")
	logFormat := fs.String("log-format", envOr("CODECRAFTER_LOG_FORMAT", "auto"), "auto, text or json [$CODECRAFTER_LOG_FORMAT]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(*logLevel, *logFormat, stderr)
	if err != nil {
		return err
	}
	p, err := dockerproxy.New(dockerproxy.Config{
		Upstream:      *upstream,
		Label:         sandbox.LabelInstance,
		ImagePrefixes: strings.Split(*images, ","),
		Runtime:       *runtime,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	// No write timeout: attach, wait and events are long-lived streams.
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("docker-proxy serving", "addr", ln.Addr().String(), "upstream", *upstream, "images", *images, "runtime", *runtime)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("docker-proxy: %w", err)
	}
	return nil
}
