package server

import (
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/klauspost/compress/gzhttp"
)

// appRoutes are the web client's own pages: each gets index.html, and the
// client's router takes it from there. Other paths are 404s.
var appRoutes = []string{"GET /{$}", "GET /signin", "GET /signup", "GET /s/{id}", "GET /join/{code}"}

// appCSP lets the client run its own scripts only (no inline or eval), load
// its own styles (CodeMirror injects <style> elements, hence 'unsafe-inline'
// for styles), and talk to this host over HTTP and WebSocket.
const appCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; " +
	"connect-src 'self'"

// notBuilt is the page of a binary built without the client.
const notBuilt = "The web client is not built into this binary: run `make build` " +
	"(it runs npm ci && npm run build in web/), or use the API at /graphql.\n"

// registerWebApp serves the client built into dist (package web's Dist):
// index.html on its routes, revalidated on each load, and the hashed
// files under /app/ as immutable.
func registerWebApp(mux *http.ServeMux, dist fs.FS) {
	index, err := fs.ReadFile(dist, "index.html")
	page := func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if err != nil {
			h.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(notBuilt))
			return
		}
		csp := appCSP
		if hostOK(r.Host) {
			// 'self' covers ws(s) in current browsers; older ones need it said.
			csp += " ws://" + r.Host + " wss://" + r.Host
		}
		h.Set("Content-Security-Policy", csp)
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(index)
	}
	for _, route := range appRoutes {
		mux.HandleFunc(route, page)
	}
	files := http.FileServerFS(dist)
	mux.Handle("GET /app/", gzhttp.GzipHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		if st, err := fs.Stat(dist, name); err != nil || st.IsDir() { // no listings
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		if ct, ok := assetTypes[path.Ext(name)]; ok {
			h.Set("Content-Type", ct)
		}
		// Vite names every file under app/ by its content hash.
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		files.ServeHTTP(w, r)
	})))
}
