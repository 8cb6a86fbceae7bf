package dockerproxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/codecrafter/codecrafter/dockerproxy"
)

const label = "org.codecrafter.sandbox"

// engine is a fake Docker engine on a unix socket: it records what
// reaches it and knows two containers, one labelled.
type engine struct {
	mu   sync.Mutex
	seen []string // "METHOD path?query"
}

func (e *engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.seen = append(e.seen, r.Method+" "+r.URL.RequestURI())
	e.mu.Unlock()
	inspect := map[string]string{
		"/v1.47/containers/box/json":           `{"Id":"box0123456789","Config":{"Labels":{"` + label + `":"w1"}}}`,
		"/v1.47/containers/other/json":         `{"Id":"other0123456789","Config":{"Labels":{"app":"api"}}}`,
		"/containers/box/json":                 `{"Id":"box0123456789","Config":{"Labels":{"` + label + `":"w1"}}}`,
		"/containers/other/json":               `{"Id":"other0123456789","Config":{"Labels":{"app":"api"}}}`,
		"/v1.47/containers/box0123456789/json": `{"Id":"box0123456789","Config":{"Labels":{"` + label + `":"w1"}}}`,
	}
	if body, ok := inspect[r.URL.Path]; ok && r.Method == "GET" {
		fmt.Fprint(w, body)
		return
	}
	if strings.HasSuffix(r.URL.Path, "/json") && strings.Contains(r.URL.Path, "/containers/") && r.URL.Path != "/v1.47/containers/json" {
		http.Error(w, `{"message":"No such container"}`, http.StatusNotFound)
		return
	}
	fmt.Fprint(w, "{}")
}

func (e *engine) last() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) == 0 {
		return ""
	}
	return e.seen[len(e.seen)-1]
}

func (e *engine) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}

// setup starts a fake engine (handler) on a unix socket and the proxy in
// front of it; it returns the proxy's URL.
func setup(t *testing.T, handler http.Handler, runtime string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	up := &httptest.Server{Listener: ln, Config: &http.Server{Handler: handler}}
	up.Start()
	t.Cleanup(up.Close)
	p, err := dockerproxy.New(dockerproxy.Config{
		Upstream: "unix://" + sock, Label: label, ImagePrefixes: []string{"codecrafter/"}, Runtime: runtime,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}

// sandboxCreate is a create body as the sandbox sends it (box.go).
func sandboxCreate(edit func(m map[string]any)) string {
	var m map[string]any
	_ = json.Unmarshal([]byte(`{
	  "Image": "codecrafter/python", "Entrypoint": ["/ccbox"], "User": "65534:65534",
	  "NetworkDisabled": true, "Env": [], "OpenStdin": true,
	  "Labels": {"org.codecrafter.sandbox": "w1", "org.codecrafter.sandbox.owner": "x/1/2/n"},
	  "HostConfig": {"NetworkMode": "none", "ReadonlyRootfs": true, "CapDrop": ["ALL"],
	    "SecurityOpt": ["no-new-privileges"], "Init": true, "IpcMode": "private",
	    "Tmpfs": {"/box": "rw,exec,size=1m"}, "Memory": 268435456, "MemorySwap": 268435456,
	    "PortBindings": {}, "LogConfig": {"Type": "none"}}
	}`), &m)
	if edit != nil {
		edit(m)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func host(m map[string]any) map[string]any { return m["HostConfig"].(map[string]any) }

func TestFilter(t *testing.T) {
	t.Parallel()
	eng := &engine{}
	base := setup(t, eng, "")
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		forwarded                string // what the engine got; "" when nothing
	}{
		{"ping", "GET", "/_ping", "", 200, "GET /_ping"},
		{"ping head", "HEAD", "/v1.47/_ping", "", 200, "HEAD /v1.47/_ping"},
		{"version", "GET", "/v1.47/version", "", 200, "GET /v1.47/version"},
		{"info", "GET", "/v1.47/info", "", 200, "GET /v1.47/info"},
		{"sandbox image", "GET", "/v1.47/images/codecrafter/python:latest/json", "", 200, "GET /v1.47/images/codecrafter/python:latest/json"},
		{"other image", "GET", "/v1.47/images/debian/json", "", 403, ""},
		{"create", "POST", "/v1.47/containers/create", sandboxCreate(nil), 200, "POST /v1.47/containers/create"},
		{"start labelled, by full id", "POST", "/v1.47/containers/box/start", "", 200, "POST /v1.47/containers/box0123456789/start"},
		{"wait", "POST", "/v1.47/containers/box/wait?condition=not-running", "", 200, "POST /v1.47/containers/box0123456789/wait?condition=not-running"},
		{"kill", "POST", "/v1.47/containers/box/kill?signal=KILL", "", 200, "POST /v1.47/containers/box0123456789/kill?signal=KILL"},
		{"inspect", "GET", "/v1.47/containers/box/json", "", 200, "GET /v1.47/containers/box0123456789/json"},
		{"remove", "DELETE", "/v1.47/containers/box?force=1&v=1", "", 200, "DELETE /v1.47/containers/box0123456789?force=1&v=1"},
		{"update memory", "POST", "/v1.47/containers/box/update", `{"Memory": 1048576, "MemorySwap": 1048576, "CpuShares": 0, "RestartPolicy": {}}`, 200, "POST /v1.47/containers/box0123456789/update"},
		{"update restart policy", "POST", "/v1.47/containers/box/update", `{"Memory": 1, "RestartPolicy": {"Name": "always"}}`, 403, ""},
		{"update cpus", "POST", "/v1.47/containers/box/update", `{"NanoCpus": 8000000000}`, 403, ""},

		{"start unlabelled", "POST", "/v1.47/containers/other/start", "", 403, ""},
		{"kill unlabelled", "POST", "/v1.47/containers/other/kill", "", 403, ""},
		{"remove unlabelled", "DELETE", "/v1.47/containers/other", "", 403, ""},
		{"inspect unlabelled", "GET", "/v1.47/containers/other/json", "", 403, ""},
		{"unknown container", "POST", "/v1.47/containers/nope/start", "", 404, ""},

		{"exec", "POST", "/v1.47/containers/box/exec", `{"Cmd":["sh"]}`, 403, ""},
		{"archive", "PUT", "/v1.47/containers/box/archive?path=/", "", 403, ""},
		{"stop", "POST", "/v1.47/containers/box/stop", "", 403, ""},
		{"logs", "GET", "/v1.47/containers/box/logs", "", 403, ""},
		{"pull", "POST", "/v1.47/images/create?fromImage=alpine", "", 403, ""},
		{"build", "POST", "/v1.47/build", "", 403, ""},
		{"image delete", "DELETE", "/v1.47/images/codecrafter/python", "", 403, ""},
		{"volumes", "GET", "/v1.47/volumes", "", 403, ""},
		{"networks", "POST", "/v1.47/networks/create", "{}", 403, ""},
		{"swarm", "POST", "/v1.47/swarm/init", "{}", 403, ""},
		{"plugins", "GET", "/v1.47/plugins", "", 403, ""},
		{"system prune", "POST", "/v1.47/containers/prune", "", 403, ""},
		{"path trick", "GET", "/v1.47/containers/box/../../images/json", "", 403, ""},

		{"create privileged", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["Privileged"] = true }), 403, ""},
		{"create with a bind", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["Binds"] = []string{"/:/host"} }), 403, ""},
		{"create with a mount", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) {
			host(m)["Mounts"] = []any{map[string]any{"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/s"}}
		}), 403, ""},
		{"create with a device", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) {
			host(m)["Devices"] = []any{map[string]any{"PathOnHost": "/dev/kmsg"}}
		}), 403, ""},
		{"create with a capability", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["CapAdd"] = []string{"SYS_ADMIN"} }), 403, ""},
		{"create on a network", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["NetworkMode"] = "bridge" }), 403, ""},
		{"create network enabled", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { delete(m, "NetworkDisabled") }), 403, ""},
		{"create host pid", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["PidMode"] = "host" }), 403, ""},
		{"create shared ipc", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["IpcMode"] = "container:api" }), 403, ""},
		{"create host userns", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["UsernsMode"] = "host" }), 403, ""},
		{"create unconfined", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) {
			host(m)["SecurityOpt"] = []string{"no-new-privileges", "seccomp=unconfined"}
		}), 403, ""},
		{"create without no-new-privileges", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["SecurityOpt"] = nil }), 403, ""},
		{"create sysctls", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) {
			host(m)["Sysctls"] = map[string]string{"kernel.shm_rmid_forced": "1"}
		}), 403, ""},
		{"create published port", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) {
			host(m)["PortBindings"] = map[string]any{"80/tcp": []any{map[string]string{"HostPort": "80"}}}
		}), 403, ""},
		{"create without the label", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { m["Labels"] = map[string]string{"app": "x"} }), 403, ""},
		{"create another image", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { m["Image"] = "debian:bookworm" }), 403, ""},
		{"create under crun", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["Runtime"] = "crun" }), 200, "POST /v1.47/containers/create"},
		{"create another runtime", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["Runtime"] = "kata" }), 403, ""},
		{"create lower-case keys", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["privileged"] = true }), 403, ""},
		{"create as root", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { m["User"] = "0:0" }), 403, ""},
		{"create as the image's user", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { delete(m, "User") }), 403, ""},
		{"create writable root", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["ReadonlyRootfs"] = false }), 403, ""},
		{"create keeping capabilities", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["CapDrop"] = []string{"NET_RAW"} }), 403, ""},
		{"create with a capability set", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["Capabilities"] = []string{"CAP_SYS_ADMIN"} }), 403, ""},
		{"create unmasked /proc", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["MaskedPaths"] = []string{} }), 403, ""},
		{"create in another cgroup", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["CgroupParent"] = "/" }), 403, ""},
		{"create OOM-protected", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { host(m)["OomScoreAdj"] = -1000 }), 403, ""},
		{"create with a volume", "POST", "/v1.47/containers/create", sandboxCreate(func(m map[string]any) { m["Volumes"] = map[string]any{"/data": map[string]any{}} }), 403, ""},
		{"image path trick", "GET", "/v1.47/images/codecrafter/../debian/json", "", 403, ""},
		{"create not JSON", "POST", "/v1.47/containers/create", "{", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := eng.count()
			req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.status {
				t.Errorf("status %d (%s), want %d", res.StatusCode, body, tc.status)
			}
			got := ""
			if eng.count() > before {
				got = eng.last()
			}
			if tc.forwarded == "" && got != "" && !strings.HasSuffix(strings.SplitN(got, "?", 2)[0], "/json") {
				t.Errorf("the engine got %q, want nothing but an inspect", got)
			}
			if tc.forwarded != "" && got != tc.forwarded {
				t.Errorf("the engine got %q, want %q", got, tc.forwarded)
			}
		})
	}
}

// TestRunsc: with a runtime configured, every create must use it.
func TestRuntime(t *testing.T) {
	t.Parallel()
	base := setup(t, &engine{}, "runsc")
	for rt, want := range map[string]int{"runsc": 200, "": 403, "runc": 403} {
		body := sandboxCreate(func(m map[string]any) { host(m)["Runtime"] = rt })
		res, err := http.Post(base+"/v1.47/containers/create", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("runtime %q: status %d, want %d", rt, res.StatusCode, want)
		}
	}
}

// TestNarrow: lists and event streams only ever see labelled containers,
// with the client's own filters kept.
func TestNarrow(t *testing.T) {
	t.Parallel()
	eng := &engine{}
	base := setup(t, eng, "")
	for _, tc := range []struct {
		path string
		want map[string]map[string]bool
	}{
		{"/v1.47/containers/json?all=1", map[string]map[string]bool{"label": {label: true}}},
		{"/v1.47/containers/json?all=1&filters=" + url.QueryEscape(`{"label":{"org.codecrafter.sandbox":true},"status":{"exited":true}}`),
			map[string]map[string]bool{"label": {label: true}, "status": {"exited": true}}},
		{"/v1.47/events?filters=" + url.QueryEscape(`{"container":{"abc":true},"event":{"oom":true}}`),
			map[string]map[string]bool{"label": {label: true}, "container": {"abc": true}, "event": {"oom": true}}},
		{"/v1.47/containers/json?filters=" + url.QueryEscape(`{"label":["app=api"]}`),
			map[string]map[string]bool{"label": {label: true, "app=api": true}}},
	} {
		res, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		u, _ := url.Parse(strings.SplitN(eng.last(), " ", 2)[1])
		var got map[string]map[string]bool
		if err := json.Unmarshal([]byte(u.Query().Get("filters")), &got); err != nil {
			t.Fatalf("%s: forwarded filters: %v", tc.path, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: forwarded filters %v, want %v", tc.path, got, tc.want)
		}
	}
}

// TestAttachHalfClose: an attach upgrades the connection and carries
// stdio both ways; the client's half-close (the end of the job it sends)
// reaches the engine while the engine's answer still comes back.
func TestAttachHalfClose(t *testing.T) {
	t.Parallel()
	eng := &engine{}
	mux := http.NewServeMux()
	mux.Handle("/", eng)
	mux.HandleFunc("POST /v1.47/containers/box0123456789/attach", func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprint(rw, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		rw.Flush()
		in, err := io.ReadAll(rw) // until the client's half-close
		if err != nil {
			t.Error(err)
			return
		}
		fmt.Fprintf(rw, "got %q", in)
		rw.Flush()
	})
	base := setup(t, mux, "")
	addr := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST /v1.47/containers/box/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", res.StatusCode)
	}
	fmt.Fprint(conn, "the job")
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `got "the job"` {
		t.Errorf("the client read %q", out)
	}
}

// TestAttachUnlabelled: attaching to someone else's container is refused
// before anything reaches the engine's attach.
func TestAttachUnlabelled(t *testing.T) {
	t.Parallel()
	eng := &engine{}
	base := setup(t, eng, "")
	req, _ := http.NewRequestWithContext(context.Background(), "POST", base+"/v1.47/containers/other/attach?stream=1", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden || strings.Contains(eng.last(), "attach") {
		t.Errorf("status %d, engine got %q; want 403 and no attach", res.StatusCode, eng.last())
	}
}
