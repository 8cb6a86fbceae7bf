package server

import (
	"log/slog"
	"net/http"
	"time"
)

// Timeouts of the *http.Server HTTPServer builds.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
)

// HTTPServer returns an *http.Server for s on addr with sane timeouts.
// WriteTimeout does not cut WebSockets: the upgrade clears the
// connection's deadlines and gqlgen's keep-alives take over. Its
// Shutdown also calls s.Shutdown, which closes the WebSockets that
// http.Server.Shutdown leaves open (it does not track hijacked conns).
func (s *Server) HTTPServer(addr string) *http.Server {
	srv := &http.Server{
		Addr:              addr,
		Handler:           s.Handler(),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(s.Shutdown)
	return srv
}
