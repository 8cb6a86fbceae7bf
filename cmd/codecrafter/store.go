package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/codecrafter/codecrafter/ferret"
)

// storeMain serves the embedded MongoDB-wire store (FerretDB on SQLite,
// behind the proxy that makes its single-document writes atomic) on a TCP
// address, for deployments that split serve and worker without a MongoDB.
func storeMain(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("CODECRAFTER_STORE_ADDR", "127.0.0.1:27017"), "listen address [$CODECRAFTER_STORE_ADDR]")
	dataDir := fs.String("data-dir", envOr("CODECRAFTER_DATA_DIR", "./data"), "directory of the store's files [$CODECRAFTER_DATA_DIR]")
	logLevel := fs.String("log-level", envOr("CODECRAFTER_LOG_LEVEL", "info"), "debug, info, warn or error [$CODECRAFTER_LOG_LEVEL]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(*logLevel, "auto", stderr)
	if err != nil {
		return err
	}
	dir := filepath.Join(*dataDir, "db")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	emb, err := ferret.Start(ctx, dir, log, ferret.WithListenAddr(*addr))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer emb.Close()
	log.Info("store serving", "uri", emb.URI(), "dir", dir)
	<-ctx.Done()
	return nil
}
