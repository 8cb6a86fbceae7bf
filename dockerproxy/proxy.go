// Package dockerproxy is a filtering reverse proxy in front of the Docker
// Engine API, for execution workers that should not hold the raw socket.
//
// It forwards only the calls the sandbox runner makes (sandbox/box.go,
// run.go, docker.go): ping, version, info, inspect of the sandbox images,
// and create/attach/start/wait/kill/update/inspect/remove of containers
// carrying the sandbox label, list and events narrowed to that label.
// A create must keep the sandbox's hardening (no network, no privilege,
// a non-root user, a read-only root, every capability dropped,
// no-new-privileges, no mounts, volumes or devices, no host namespaces,
// the engine's /proc masks and cgroup, the configured runtime).
// Everything else is refused with 403.
//
// What it still trusts its client with: starting any number of labelled
// containers from the allowed images with any resource limits, and
// reading and controlling every labelled container on the engine, also
// other workers'. That is what a worker needs; it is not root on the host.
package dockerproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxBody bounds the request bodies the proxy reads to check (create,
// update): the sandbox's are under 4 KiB.
const maxBody = 1 << 20

// Config says what the proxy lets through.
type Config struct {
	// Upstream is the engine: "unix:///var/run/docker.sock" or
	// "tcp://host:2375".
	Upstream string
	// Label must be on every container the client creates or touches
	// (the sandbox's org.codecrafter.sandbox).
	Label string
	// ImagePrefixes are the images the client may inspect and run
	// ("codecrafter/").
	ImagePrefixes []string
	// Runtime, when set, is the OCI runtime every container must use
	// (runsc for gVisor); when empty the engine's default ("" or "runc").
	Runtime string
	Logger  *slog.Logger
}

// Proxy is the filtering http.Handler.
type Proxy struct {
	cfg     Config
	dial    func(ctx context.Context) (net.Conn, error)
	client  *http.Client // the proxy's own calls (inspect before acting)
	forward *httputil.ReverseProxy
	log     *slog.Logger
}

// New returns a proxy to cfg.Upstream.
func New(cfg Config) (*Proxy, error) {
	if cfg.Label == "" || len(cfg.ImagePrefixes) == 0 {
		return nil, errors.New("dockerproxy: a label and at least one image prefix are required")
	}
	u, err := url.Parse(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("dockerproxy: upstream: %w", err)
	}
	var network, addr string
	switch u.Scheme {
	case "unix":
		network, addr = "unix", u.Path
	case "tcp", "http":
		network, addr = "tcp", u.Host
	default:
		return nil, fmt.Errorf("dockerproxy: upstream %q: want unix:// or tcp://", cfg.Upstream)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger}
	var d net.Dialer
	p.dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, network, addr) }
	tr := &http.Transport{
		DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return p.dial(ctx) },
		MaxIdleConns:    16,
		IdleConnTimeout: 90 * time.Second,
	}
	p.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	p.forward = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host, r.Out.Host = "http", "docker", "docker"
		},
		Transport:     tr,
		FlushInterval: -1, // events and wait stream
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.log.Warn("dockerproxy: upstream", "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, http.StatusBadGateway, "engine unreachable")
		},
	}
	return p, nil
}

// A rule allows one method and path shape; check may refuse or rewrite.
type rule struct {
	method string
	path   *regexp.Regexp
	check  func(p *Proxy, r *http.Request, m []string) error
}

var (
	version = regexp.MustCompile(`^/v1\.[0-9]+(/.*)$`)
	rules   = []rule{
		{"GET", regexp.MustCompile(`^/_ping$`), nil},
		{"HEAD", regexp.MustCompile(`^/_ping$`), nil},
		{"GET", regexp.MustCompile(`^/version$`), nil},
		{"GET", regexp.MustCompile(`^/info$`), nil},
		{"GET", regexp.MustCompile(`^/images/(.+)/json$`), (*Proxy).checkImage},
		{"POST", regexp.MustCompile(`^/containers/create$`), (*Proxy).checkCreate},
		{"GET", regexp.MustCompile(`^/containers/json$`), (*Proxy).narrow},
		{"GET", regexp.MustCompile(`^/events$`), (*Proxy).narrow},
		{"GET", regexp.MustCompile(`^/containers/([^/]+)/json$`), (*Proxy).checkLabelled},
		{"POST", regexp.MustCompile(`^/containers/([^/]+)/(?:start|wait|kill)$`), (*Proxy).checkLabelled},
		{"POST", regexp.MustCompile(`^/containers/([^/]+)/update$`), (*Proxy).checkUpdate},
		{"POST", regexp.MustCompile(`^/containers/([^/]+)/attach$`), (*Proxy).checkLabelled},
		{"DELETE", regexp.MustCompile(`^/containers/([^/]+)$`), (*Proxy).checkLabelled},
	}
)

// refusal is a request the proxy does not forward.
type refusal struct {
	status int
	msg    string
}

func (e *refusal) Error() string { return e.msg }

func refuse(format string, args ...any) error {
	return &refusal{http.StatusForbidden, "dockerproxy: " + fmt.Sprintf(format, args...)}
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if m := version.FindStringSubmatch(path); m != nil {
		path = m[1]
	}
	err := refuse("%s %s is not allowed", r.Method, path)
	for _, rl := range rules {
		m := rl.path.FindStringSubmatch(path)
		if m == nil || rl.method != r.Method {
			continue
		}
		err = nil
		if rl.check != nil {
			err = rl.check(p, r, m)
		}
		break
	}
	if err != nil {
		status, msg := http.StatusBadGateway, "engine unreachable"
		var ref *refusal
		if errors.As(err, &ref) {
			status, msg = ref.status, ref.msg
		} else {
			p.log.Warn("dockerproxy: check", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		if status == http.StatusForbidden {
			p.log.Warn("dockerproxy: refused", "method", r.Method, "path", r.URL.Path, "reason", msg)
		}
		writeError(w, status, msg)
		return
	}
	if strings.HasSuffix(path, "/attach") {
		p.hijack(w, r)
		return
	}
	p.forward.ServeHTTP(w, r)
}

// writeError answers as the engine does, so clients show the message.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (p *Proxy) allowedImage(ref string) bool {
	if strings.Contains(ref, "..") {
		return false
	}
	for _, pre := range p.cfg.ImagePrefixes {
		if strings.HasPrefix(ref, pre) {
			return true
		}
	}
	return false
}

// rootUser reports a user spec that runs as uid 0 ("" is the image's
// default, root in the sandbox images' base).
func rootUser(u string) bool {
	name, _, _ := strings.Cut(u, ":")
	return name == "" || name == "0" || name == "root"
}

func (p *Proxy) checkImage(r *http.Request, m []string) error {
	if !p.allowedImage(m[1]) {
		return refuse("image %q is not a sandbox image", m[1])
	}
	return nil
}

// createRequest is the part of a create body the proxy checks. Field
// matching is encoding/json's, as the engine's own decoding.
type createRequest struct {
	Image           string
	User            string
	Labels          map[string]string
	NetworkDisabled bool
	Volumes         map[string]json.RawMessage
	HostConfig      *struct {
		Privileged     bool
		ReadonlyRootfs bool
		CapDrop        []string
		Capabilities   []string
		CgroupParent   string
		OomScoreAdj    int
		MaskedPaths    json.RawMessage
		ReadonlyPaths  json.RawMessage
		Binds          []string
		Mounts         []json.RawMessage
		VolumesFrom    []string
		Devices        []json.RawMessage
		DeviceRequests []json.RawMessage
		CapAdd         []string
		NetworkMode    string
		PidMode        string
		IpcMode        string
		UTSMode        string
		UsernsMode     string
		CgroupnsMode   string
		Cgroup         string
		SecurityOpt    []string
		Runtime        string
		Links          []string
		PortBindings   json.RawMessage
		ExtraHosts     []string
		Sysctls        map[string]string
	}
	NetworkingConfig *struct {
		EndpointsConfig map[string]json.RawMessage
	}
}

// checkCreate lets through a container only as hardened as the sandbox
// makes them: anything that would widen it is refused.
func (p *Proxy) checkCreate(r *http.Request, _ []string) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var c createRequest
	if err := json.Unmarshal(body, &c); err != nil {
		return &refusal{http.StatusBadRequest, "dockerproxy: create: " + err.Error()}
	}
	h := c.HostConfig
	switch {
	case c.Labels[p.cfg.Label] == "":
		return refuse("create: the %s label is required", p.cfg.Label)
	case !p.allowedImage(c.Image):
		return refuse("create: image %q is not a sandbox image", c.Image)
	case h == nil:
		return refuse("create: a HostConfig is required")
	case h.Privileged:
		return refuse("create: privileged containers are not allowed")
	case rootUser(c.User):
		return refuse("create: the container must run as a non-root user")
	case !h.ReadonlyRootfs:
		return refuse("create: the root filesystem must be read-only")
	case !slices.Contains(h.CapDrop, "ALL") || len(h.Capabilities) > 0:
		return refuse("create: every capability must be dropped")
	case h.CgroupParent != "" || h.OomScoreAdj < 0:
		return refuse("create: cgroup parent and OOM priority are the engine's")
	case !absent(h.MaskedPaths) || !absent(h.ReadonlyPaths): // [] unmasks everything
		return refuse("create: masked and read-only /proc paths are the engine's")
	case len(c.Volumes) > 0:
		return refuse("create: volumes are not allowed")
	case len(h.Binds)+len(h.Mounts)+len(h.VolumesFrom) > 0:
		return refuse("create: mounts are not allowed")
	case len(h.Devices)+len(h.DeviceRequests) > 0:
		return refuse("create: devices are not allowed")
	case len(h.CapAdd) > 0:
		return refuse("create: added capabilities are not allowed")
	case h.NetworkMode != "none" || !c.NetworkDisabled:
		return refuse("create: the network must be none")
	case c.NetworkingConfig != nil && len(c.NetworkingConfig.EndpointsConfig) > 0,
		len(h.Links)+len(h.ExtraHosts) > 0, len(h.PortBindings) > 0 && string(h.PortBindings) != "null" && string(h.PortBindings) != "{}":
		return refuse("create: networking settings are not allowed")
	case hostMode(h.PidMode) || hostMode(h.IpcMode) || hostMode(h.UTSMode) || hostMode(h.UsernsMode) ||
		hostMode(h.CgroupnsMode) || h.Cgroup != "":
		return refuse("create: host or shared namespaces are not allowed")
	case len(h.Sysctls) > 0:
		return refuse("create: sysctls are not allowed")
	case slices.ContainsFunc(h.SecurityOpt, func(o string) bool { return strings.Contains(o, "unconfined") }):
		return refuse("create: unconfined security options are not allowed")
	case !slices.Contains(h.SecurityOpt, "no-new-privileges") && !slices.Contains(h.SecurityOpt, "no-new-privileges:true"):
		return refuse("create: no-new-privileges is required")
	case !p.runtimeAllowed(h.Runtime):
		return refuse("create: runtime %q is not %q", h.Runtime, p.cfg.Runtime)
	}
	return nil
}

// hostMode reports a namespace mode that shares one with the host or
// another container.
func hostMode(m string) bool {
	return m == "host" || strings.HasPrefix(m, "container:")
}

func (p *Proxy) runtimeAllowed(rt string) bool {
	if p.cfg.Runtime == "" || p.cfg.Runtime == "runc" {
		// crun: the sandbox's default where registered; the engine
		// builds the same hardened spec for it as for runc.
		return rt == "" || rt == "runc" || rt == "crun"
	}
	return rt == p.cfg.Runtime
}

// checkUpdate allows only memory changes (the warm pool resizes a box).
func (p *Proxy) checkUpdate(r *http.Request, m []string) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return &refusal{http.StatusBadRequest, "dockerproxy: update: " + err.Error()}
	}
	for k, v := range fields {
		if k != "Memory" && k != "MemorySwap" && !isZero(v) {
			return refuse("update: only Memory and MemorySwap may change, not %s", k)
		}
	}
	return p.checkLabelled(r, m)
}

// absent reports a field left out or null.
func absent(v json.RawMessage) bool {
	t := string(bytes.TrimSpace(v))
	return t == "" || t == "null"
}

// isZero reports a JSON zero value (clients send whole structs).
func isZero(v json.RawMessage) bool {
	switch string(bytes.TrimSpace(v)) {
	case "", "null", "0", `""`, "false", "[]", "{}":
		return true
	}
	return false
}

func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxBody {
		return nil, &refusal{http.StatusRequestEntityTooLarge, "dockerproxy: request body too large"}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, nil
}

// checkLabelled lets a call on one container through when the container
// has the label, and rewrites the path to its full id so that a name
// cannot point elsewhere between the check and the call.
func (p *Proxy) checkLabelled(r *http.Request, m []string) error {
	ref := m[1]
	req, err := http.NewRequestWithContext(r.Context(), "GET", "http://docker/containers/"+url.PathEscape(ref)+"/json", nil)
	if err != nil {
		return err
	}
	res, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var info struct {
		ID     string `json:"Id"`
		Config struct{ Labels map[string]string }
	}
	switch {
	case res.StatusCode == http.StatusNotFound:
		// As the engine would say: the client's not-found handling works.
		return &refusal{http.StatusNotFound, "No such container: " + ref}
	case res.StatusCode != http.StatusOK:
		return fmt.Errorf("inspect %s: %s", ref, res.Status)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxBody)).Decode(&info); err != nil {
		return fmt.Errorf("inspect %s: %w", ref, err)
	}
	if info.Config.Labels[p.cfg.Label] == "" || info.ID == "" {
		return refuse("container %s has no %s label", ref, p.cfg.Label)
	}
	i := strings.LastIndex(r.URL.Path, "/containers/"+ref)
	r.URL.Path = r.URL.Path[:i] + "/containers/" + info.ID + r.URL.Path[i+len("/containers/")+len(ref):]
	r.URL.RawPath = ""
	return nil
}

// narrow adds the label to a list's or event stream's filters: several
// label filters must all match, so the client's own stay in force.
func (p *Proxy) narrow(r *http.Request, _ []string) error {
	q := r.URL.Query()
	filters := map[string]map[string]bool{}
	if s := q.Get("filters"); s != "" {
		if err := json.Unmarshal([]byte(s), &filters); err != nil {
			// The legacy form: {"label": ["a", "b"]}.
			var legacy map[string][]string
			if json.Unmarshal([]byte(s), &legacy) != nil {
				return &refusal{http.StatusBadRequest, "dockerproxy: filters: " + err.Error()}
			}
			filters = map[string]map[string]bool{}
			for k, vs := range legacy {
				filters[k] = map[string]bool{}
				for _, v := range vs {
					filters[k][v] = true
				}
			}
		}
	}
	if filters["label"] == nil {
		filters["label"] = map[string]bool{}
	}
	filters["label"][p.cfg.Label] = true
	b, err := json.Marshal(filters)
	if err != nil {
		return err
	}
	q.Set("filters", string(b))
	r.URL.RawQuery = q.Encode()
	return nil
}

// hijack forwards an attach: the engine answers 101 (or 200) and the
// connection then carries the container's stdio both ways. Half-closes
// pass through (the sandbox closes its write side after sending the job),
// which httputil.ReverseProxy's upgrade handling does not do.
func (p *Proxy) hijack(w http.ResponseWriter, r *http.Request) {
	up, err := p.dial(r.Context())
	if err != nil {
		p.log.Warn("dockerproxy: attach: dial", "err", err)
		writeError(w, http.StatusBadGateway, "engine unreachable")
		return
	}
	out := r.Clone(context.Background())
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = "", "", "docker", ""
	if err := out.Write(up); err != nil {
		up.Close()
		writeError(w, http.StatusBadGateway, "engine unreachable")
		return
	}
	upr := bufio.NewReader(up)
	res, err := http.ReadResponse(upr, out)
	if err != nil {
		up.Close()
		writeError(w, http.StatusBadGateway, "engine unreachable")
		return
	}
	if res.StatusCode != http.StatusSwitchingProtocols && res.StatusCode != http.StatusOK {
		defer up.Close()
		defer res.Body.Close()
		for k, vs := range res.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(res.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(res.Body, maxBody))
		return
	}
	rc := http.NewResponseController(w)
	client, crw, err := rc.Hijack()
	if err != nil {
		up.Close()
		writeError(w, http.StatusInternalServerError, "cannot hijack")
		return
	}
	// The head only: the body is the raw stream that follows.
	res.Body = http.NoBody
	res.ContentLength = -1
	if err := res.Write(crw); err == nil {
		err = crw.Flush()
	}
	if err != nil {
		client.Close()
		up.Close()
		return
	}
	splice(client, crw.Reader, up, upr)
}

// splice copies both ways, passing on each side's end as a half-close,
// and closes both connections when both directions have ended.
func splice(client net.Conn, clientBuf io.Reader, up net.Conn, upBuf io.Reader) {
	var wg sync.WaitGroup
	copyHalf := func(dst net.Conn, src io.Reader, srcConn net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
			_ = cw.CloseWrite()
		} else {
			// No half-close (or a broken copy): end both directions.
			dst.Close()
			srcConn.Close()
		}
	}
	wg.Add(2)
	go copyHalf(up, clientBuf, client)
	go copyHalf(client, upBuf, up)
	wg.Wait()
	client.Close()
	up.Close()
}
