package server

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzhttp"
)

// The GraphiQL page and every file it loads, vendored by
// assets/vendor.sh (versions in assets/vendor/VERSIONS).
//
//go:embed assets/index.html assets/graphiql.js assets/graphiql.css assets/vendor
var embedded embed.FS

// assetsFS is embedded with the assets/ prefix stripped.
var assetsFS = func() fs.FS {
	sub, err := fs.Sub(embedded, "assets")
	if err != nil {
		panic(err)
	}
	return sub
}()

// graphiQLCSP lets the page run its own scripts and styles only (GraphiQL
// injects <style> elements, hence 'unsafe-inline' for styles), load
// its inlined fonts, and talk to this host over HTTP and WebSocket.
const graphiQLCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; " +
	"connect-src 'self'"

// graphiQLPage serves the GraphiQL IDE.
func graphiQLPage(w http.ResponseWriter, r *http.Request) {
	page, err := fs.ReadFile(assetsFS, "index.html")
	if err != nil {
		http.Error(w, "GraphiQL is missing from this build", http.StatusInternalServerError)
		return
	}
	csp := graphiQLCSP
	if hostOK(r.Host) {
		// 'self' covers ws(s) in current browsers; older ones need it said.
		csp += " ws://" + r.Host + " wss://" + r.Host
	}
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(page)
}

// hostOK accepts a Host header fit to be written into a CSP.
func hostOK(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for _, c := range []byte(host) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == ':' || c == '[' || c == ']'
		if !ok {
			return false
		}
	}
	return true
}

// assetTypes pins the content types of the page's files (the system MIME
// table varies).
var assetTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".html": "text/html; charset=utf-8",
}

// assetETags are content hashes: browsers revalidate (no-cache) and get
// 304 until a new build changes a file.
var assetETags = sync.OnceValue(func() map[string]string {
	tags := map[string]string{}
	_ = fs.WalkDir(assetsFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assetsFS, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		tags[p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return tags
})

// graphiQLAssets serves the embedded files under /assets/, gzipped for
// clients that accept it (graphiql.min.js is 3.5 MB, about 0.7 gzipped).
func graphiQLAssets() http.Handler {
	files := http.StripPrefix("/assets/", http.FileServerFS(assetsFS))
	return gzhttp.GzipHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/assets/")
		tag, ok := assetETags()[name]
		if !ok { // unknown file or a directory: no listings
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		if ct, ok := assetTypes[path.Ext(name)]; ok {
			h.Set("Content-Type", ct)
		}
		h.Set("ETag", tag)
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
}
