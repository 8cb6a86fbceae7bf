// Package deploy_test checks the deployment files against each other and
// against the code: Kubernetes manifests are well-formed and consistent,
// the compose file builds from files that exist, and every setting and
// metric name they use is one the Go code defines. promtool and
// docker-compose, when installed, check the Prometheus files and the
// compose file themselves.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/codecrafter/codecrafter/internal/testenv"
)

type doc = map[string]any

// key names a Kubernetes object.
type key struct{ kind, name string }

// get walks nested maps by keys; nil when a step is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string { s, _ := get(v, keys...).(string); return s }

func list(v any, keys ...string) []any { l, _ := get(v, keys...).([]any); return l }

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeAll returns the non-empty YAML documents of a file.
func decodeAll(t *testing.T, path string) []doc {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
	var docs []doc
	for {
		var d doc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(d) > 0 {
			docs = append(docs, d)
		}
	}
}

// goSource is the text of the command's and packages' non-test Go files.
func goSource(t *testing.T, dirs ...string) string {
	t.Helper()
	var sb strings.Builder
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join("..", dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if !strings.HasSuffix(f, "_test.go") {
				sb.Write(readFile(t, f))
			}
		}
	}
	if sb.Len() == 0 {
		t.Fatalf("no Go source found in %v", dirs)
	}
	return sb.String()
}

// knownSettings are the environment variables the codecrafter command reads.
func knownSettings(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`"((?:CODECRAFTER_[A-Z0-9_]+)|MONGO_URI|REDIS_URL|AMQP_URL)"`)
	known := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(goSource(t, "cmd/codecrafter"), -1) {
		known[m[1]] = true
	}
	return known
}

// isAppSetting reports whether an environment name is meant for codecrafter.
func isAppSetting(name string) bool {
	return strings.HasPrefix(name, "CODECRAFTER_") || name == "MONGO_URI" || name == "REDIS_URL" || name == "AMQP_URL"
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("k8s/*")
	if err != nil {
		t.Fatal(err)
	}
	known := knownSettings(t)
	objects := map[key]doc{}
	for _, f := range files {
		docs := decodeAll(t, f)
		if len(docs) == 0 {
			t.Errorf("%s: no YAML documents", f)
		}
		for i, d := range docs {
			kind, name := str(d, "kind"), str(d, "metadata", "name")
			if str(d, "apiVersion") == "" || kind == "" || name == "" {
				t.Errorf("%s #%d: apiVersion, kind and metadata.name are required", f, i)
				continue
			}
			if kind != "Namespace" && str(d, "metadata", "namespace") != "codecrafter" {
				t.Errorf("%s: %s/%s: metadata.namespace is not codecrafter", f, kind, name)
			}
			k := key{kind, name}
			if _, dup := objects[k]; dup {
				t.Errorf("%s: %s/%s defined twice", f, kind, name)
			}
			objects[k] = d
		}
	}
	for _, want := range []key{
		{"Namespace", "codecrafter"}, {"ConfigMap", "codecrafter"}, {"Secret", "codecrafter"},
		{"Deployment", "api"}, {"Service", "api"}, {"PodDisruptionBudget", "api"}, {"HorizontalPodAutoscaler", "api"},
		{"Deployment", "worker"}, {"PodDisruptionBudget", "worker"}, {"Ingress", "api"},
		{"StatefulSet", "store"}, {"StatefulSet", "redis"}, {"StatefulSet", "rabbitmq"},
		{"NetworkPolicy", "default-deny-ingress"}, {"NetworkPolicy", "default-deny-egress"},
	} {
		if objects[want] == nil {
			t.Errorf("missing %s/%s", want.kind, want.name)
		}
	}
	for k, d := range objects {
		switch k.kind {
		case "ConfigMap":
			for name := range get(d, "data").(map[string]any) {
				if isAppSetting(name) && !known[name] {
					t.Errorf("ConfigMap/%s: %s is not a codecrafter setting", k.name, name)
				}
			}
		case "Deployment", "StatefulSet":
			checkWorkload(t, k.kind+"/"+k.name, d, known, objects[key{"Secret", "codecrafter"}])
		case "Service":
			sel, _ := get(d, "spec", "selector").(map[string]any)
			if !selectsSomething(sel, objects) {
				t.Errorf("Service/%s: selector %v matches no workload's pods", k.name, sel)
			}
		}
	}
}

// checkWorkload checks a Deployment's or StatefulSet's pod template.
func checkWorkload(t *testing.T, what string, d doc, known map[string]bool, secret doc) {
	t.Helper()
	sel, _ := get(d, "spec", "selector", "matchLabels").(map[string]any)
	labels, _ := get(d, "spec", "template", "metadata", "labels").(map[string]any)
	if len(sel) == 0 {
		t.Errorf("%s: no spec.selector.matchLabels", what)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%s: selector %s=%v does not match the pod template's labels", what, k, v)
		}
	}
	containers := list(d, "spec", "template", "spec", "containers")
	if len(containers) == 0 {
		t.Errorf("%s: no containers", what)
	}
	for _, c := range containers {
		name := what + " container " + str(c, "name")
		if str(c, "image") == "" {
			t.Errorf("%s: no image", name)
		}
		if get(c, "resources", "limits") == nil || get(c, "resources", "requests") == nil {
			t.Errorf("%s: resources.requests and .limits are required", name)
		}
		if get(c, "livenessProbe") == nil && get(c, "readinessProbe") == nil {
			t.Errorf("%s: no probe", name)
		}
		if get(c, "securityContext", "allowPrivilegeEscalation") != false {
			t.Errorf("%s: securityContext.allowPrivilegeEscalation must be false", name)
		}
		for _, e := range list(c, "env") {
			n := str(e, "name")
			if isAppSetting(n) && !known[n] {
				t.Errorf("%s: env %s is not a codecrafter setting", name, n)
			}
			if ref := get(e, "valueFrom", "secretKeyRef"); ref != nil && get(secret, "stringData", str(ref, "key")) == nil {
				t.Errorf("%s: env %s uses secret key %q the Secret template lacks", name, n, str(ref, "key"))
			}
		}
	}
}

func selectsSomething(sel map[string]any, objects map[key]doc) bool {
	for k, d := range objects {
		if k.kind != "Deployment" && k.kind != "StatefulSet" {
			continue
		}
		labels, _ := get(d, "spec", "template", "metadata", "labels").(map[string]any)
		matches := len(sel) > 0
		for lk, lv := range sel {
			matches = matches && labels[lk] == lv
		}
		if matches {
			return true
		}
	}
	return false
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	docs := decodeAll(t, "../docker-compose.yml")
	if len(docs) != 1 {
		t.Fatalf("docker-compose.yml: %d documents, want 1", len(docs))
	}
	c := docs[0]
	if v := str(c, "version"); v != "2.4" {
		t.Errorf("version %q: docker-compose 1.29 needs 2.x (2.4) for depends_on conditions", v)
	}
	services, _ := get(c, "services").(map[string]any)
	for _, want := range []string{"store", "redis", "rabbitmq", "api1", "api2", "lb", "docker-proxy", "worker", "prometheus", "grafana"} {
		if services[want] == nil {
			t.Errorf("no service %s", want)
		}
	}
	known := knownSettings(t)
	for name, s := range services {
		if ctx := str(s, "build", "context"); ctx != "" {
			df := filepath.Join("..", ctx, str(s, "build", "dockerfile"))
			if _, err := os.Stat(df); err != nil {
				t.Errorf("service %s: dockerfile: %v", name, err)
			}
		}
		env, _ := get(s, "environment").(map[string]any)
		for k := range env {
			if isAppSetting(k) && !known[k] {
				t.Errorf("service %s: %s is not a codecrafter setting", name, k)
			}
		}
		deps, _ := get(s, "depends_on").(map[string]any)
		for dep, cond := range deps {
			if services[dep] == nil {
				t.Errorf("service %s depends on unknown %s", name, dep)
			}
			if str(cond, "condition") == "service_healthy" && !hasHealthcheck(t, services[dep]) {
				t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		if p := list(s, "profiles"); name == "grafana" && !slices.Contains(p, any("monitoring")) {
			t.Errorf("grafana needs a registry: it must stay in the monitoring profile, got %v", p)
		}
	}
}

// hasHealthcheck reports whether a compose service has a healthcheck of
// its own or from its Dockerfile's HEALTHCHECK.
func hasHealthcheck(t *testing.T, s any) bool {
	t.Helper()
	if get(s, "healthcheck") != nil {
		return true
	}
	ctx := str(s, "build", "context")
	if ctx == "" {
		return false
	}
	df := readFile(t, filepath.Join("..", ctx, str(s, "build", "dockerfile")))
	return regexp.MustCompile(`(?m)^HEALTHCHECK `).Match(df)
}

// TestMetricNames checks that alert rules and the dashboard only use
// metrics the code registers.
func TestMetricNames(t *testing.T) {
	t.Parallel()
	src := goSource(t, "server", "worker", "executions", "sandbox")
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`Name:\s+"(codecrafter_[a-z0-9_]+)"`).FindAllStringSubmatch(src, -1) {
		defined[m[1]] = true
	}
	if len(defined) < 10 {
		t.Fatalf("found only %d metric definitions in the Go source: %v", len(defined), defined)
	}
	used := regexp.MustCompile(`codecrafter_[a-z0-9_]+`)
	for _, f := range []string{"prometheus/rules/codecrafter.yml", "prometheus/rules_test.yml", "grafana/dashboards/codecrafter.json"} {
		names := used.FindAllString(string(readFile(t, f)), -1)
		if len(names) == 0 {
			t.Errorf("%s uses no codecrafter metric", f)
		}
		for _, n := range names {
			base := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(n, suffix); ok && defined[b] {
					base = b
				}
			}
			if !defined[base] {
				t.Errorf("%s: metric %s is not defined in the Go code", f, n)
			}
		}
	}
}

func TestGrafanaFiles(t *testing.T) {
	t.Parallel()
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(readFile(t, "grafana/dashboards/codecrafter.json"), &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatal("dashboard without uid or panels")
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" || q.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: query %q must use the ${datasource} variable", p.Title, q.Expr)
			}
		}
	}
	for _, f := range []string{"grafana/provisioning/datasources/prometheus.yml", "grafana/provisioning/dashboards/codecrafter.yml"} {
		docs := decodeAll(t, f)
		if len(docs) != 1 || get(docs[0], "apiVersion") == nil {
			t.Errorf("%s: want one document with apiVersion", f)
		}
	}
}

// TestPromtool runs Prometheus's own checks and the rules' unit tests.
func TestPromtool(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("promtool"); err != nil {
		testenv.Missing(t, "promtool (scripts/services.sh tools installs it)")
	}
	rules, _ := filepath.Glob("prometheus/rules/*.yml")
	for _, args := range [][]string{
		{"check", "config", "prometheus/prometheus.yml"},
		append([]string{"check", "rules"}, rules...),
		{"test", "rules", "prometheus/rules_test.yml"},
	} {
		if out, err := exec.Command("promtool", args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestComposeConfig has docker-compose itself validate the file, and
// refuse it without the required secrets.
func TestComposeConfig(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("docker-compose"); err != nil {
		testenv.Missing(t, "docker-compose (scripts/services.sh tools installs it)")
	}
	// docker-compose checks that build contexts exist; bin/stack (the
	// images' binaries, ignored by git) does only once the stack was built.
	if err := os.MkdirAll("../bin/stack", 0o755); err != nil {
		t.Fatal(err)
	}
	// An empty env file keeps a developer's .env out of the check.
	empty := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	required := []string{
		"CODECRAFTER_BASE_IMAGE=codecrafter/base:test",
		"CODECRAFTER_JWT_SECRET=" + strings.Repeat("s", 32),
		"RABBITMQ_PASSWORD=test",
	}
	compose := func(env []string, args ...string) ([]byte, error) {
		cmd := exec.Command("docker-compose", append([]string{"--env-file", empty, "-f", "../docker-compose.yml"}, args...)...)
		cmd.Env = env
		for _, kv := range os.Environ() { // the caller's settings stay out
			if !strings.HasPrefix(kv, "CODECRAFTER_") && !strings.HasPrefix(kv, "RABBITMQ_") && !strings.HasPrefix(kv, "COMPOSE_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		return cmd.CombinedOutput()
	}
	for _, args := range [][]string{{"config", "-q"}, {"--profile", "monitoring", "config", "-q"}} {
		if out, err := compose(required, args...); err != nil {
			t.Errorf("docker-compose %v: %v\n%s", args, err, out)
		}
	}
	out, err := compose([]string{required[0], required[2]}, "config", "-q")
	if err == nil || !strings.Contains(string(out), "JWT_SECRET") {
		t.Errorf("without CODECRAFTER_JWT_SECRET: err %v, output %s; want a refusal naming it", err, out)
	}
}

// TestMetricsOffTheAPIPort checks that the api serves /metrics on
// CODECRAFTER_METRICS_ADDR, a port of its own that Prometheus scrapes and
// only the monitoring namespace reaches, and that Kubernetes trusts the
// one ingress hop in X-Forwarded-For.
func TestMetricsOffTheAPIPort(t *testing.T) {
	t.Parallel()
	objects := map[key]doc{}
	for _, f := range []string{"k8s/api.yaml", "k8s/networkpolicy.yaml", "k8s/configmap.yaml"} {
		for _, d := range decodeAll(t, f) {
			objects[key{str(d, "kind"), str(d, "metadata", "name")}] = d
		}
	}
	api := objects[key{"Deployment", "api"}]
	port := str(api, "spec", "template", "metadata", "annotations", "prometheus.io/port")
	containers := list(api, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("Deployment/api: %d containers", len(containers))
	}
	env := map[string]string{}
	for _, e := range list(containers[0], "env") {
		env[str(e, "name")] = str(e, "value")
	}
	if port == "" || env["CODECRAFTER_METRICS_ADDR"] != ":"+port || env["CODECRAFTER_ADDR"] == ":"+port {
		t.Errorf("Deployment/api: scraped on port %q, CODECRAFTER_METRICS_ADDR %q, CODECRAFTER_ADDR %q",
			port, env["CODECRAFTER_METRICS_ADDR"], env["CODECRAFTER_ADDR"])
	}
	declared := false
	for _, p := range list(containers[0], "ports") {
		declared = declared || fmt.Sprint(get(p, "containerPort")) == port
	}
	if !declared {
		t.Errorf("Deployment/api: port %s is not a containerPort", port)
	}
	np := objects[key{"NetworkPolicy", "metrics"}]
	selects, allows := false, false
	for _, e := range list(np, "spec", "podSelector", "matchExpressions") {
		selects = selects || slices.Contains(list(e, "values"), any("api"))
	}
	for _, in := range list(np, "spec", "ingress") {
		for _, p := range list(in, "ports") {
			allows = allows || fmt.Sprint(get(p, "port")) == port
		}
	}
	if !selects || !allows {
		t.Errorf("NetworkPolicy/metrics: selects api %v, allows port %s %v", selects, port, allows)
	}
	cm := objects[key{"ConfigMap", "codecrafter"}]
	if got := str(cm, "data", "CODECRAFTER_TRUSTED_PROXIES"); got != "1" || get(cm, "data", "CODECRAFTER_TRUST_PROXY") != nil {
		t.Errorf("ConfigMap: CODECRAFTER_TRUSTED_PROXIES %q (want 1, the ingress hop), CODECRAFTER_TRUST_PROXY %v",
			got, get(cm, "data", "CODECRAFTER_TRUST_PROXY"))
	}

	// Compose: Prometheus scrapes the api where it serves its metrics.
	compose := decodeAll(t, "../docker-compose.yml")[0]
	addr := str(compose, "services", "api1", "environment", "CODECRAFTER_METRICS_ADDR")
	var scraped string
	for _, sc := range list(decodeAll(t, "prometheus/prometheus.yml")[0], "scrape_configs") {
		if str(sc, "job_name") == "codecrafter-api" {
			for _, sd := range list(sc, "dns_sd_configs") {
				scraped = fmt.Sprint(get(sd, "port"))
			}
		}
	}
	if addr == "" || addr != ":"+scraped || scraped == "8080" {
		t.Errorf("compose api CODECRAFTER_METRICS_ADDR %q, Prometheus scrapes the api on port %s", addr, scraped)
	}
}

// TestComposeStack checks the scale-out wiring: every API replica names
// itself, sits behind the balancer and is scraped; the workers reach the
// engine only through docker-proxy, which alone holds the socket and is
// on an internal network.
func TestComposeStack(t *testing.T) {
	t.Parallel()
	c := decodeAll(t, "../docker-compose.yml")[0]
	services, _ := get(c, "services").(map[string]any)
	nginx := string(readFile(t, "nginx/nginx.conf"))
	var scraped []any
	for _, sc := range list(decodeAll(t, "prometheus/prometheus.yml")[0], "scrape_configs") {
		if str(sc, "job_name") == "codecrafter-api" {
			for _, sd := range list(sc, "dns_sd_configs") {
				scraped = append(scraped, list(sd, "names")...)
			}
		}
	}
	names := map[string]string{}
	for name, s := range services {
		if !slices.Contains(list(s, "command"), any("serve")) {
			continue
		}
		replica := str(s, "environment", "CODECRAFTER_REPLICA_NAME")
		if replica == "" || names[replica] != "" {
			t.Errorf("api service %s: CODECRAFTER_REPLICA_NAME %q missing or shared with %s", name, replica, names[replica])
		}
		names[replica] = name
		if str(s, "environment", "CODECRAFTER_WORKER") != "off" {
			t.Errorf("api service %s runs a worker", name)
		}
		if !strings.Contains(nginx, "server "+name+":8080") {
			t.Errorf("api service %s is not in nginx's upstream", name)
		}
		if !slices.Contains(scraped, any(name)) {
			t.Errorf("api service %s is not scraped by Prometheus (%v)", name, scraped)
		}
		if get(s, "ports") != nil {
			t.Errorf("api service %s publishes ports: only lb should", name)
		}
	}
	if len(names) < 2 {
		t.Errorf("%d API replicas, want 2 or more", len(names))
	}
	for name, s := range services {
		mountsSocket := false
		for _, v := range list(s, "volumes") {
			mountsSocket = mountsSocket || strings.Contains(fmt.Sprint(v), "docker.sock")
		}
		if mountsSocket != (name == "docker-proxy") {
			t.Errorf("service %s: mounts the Docker socket %v; only docker-proxy may", name, mountsSocket)
		}
	}
	proxy, worker := services["docker-proxy"], services["worker"]
	if nets := list(proxy, "networks"); !slices.Equal(nets, []any{"engine"}) || get(c, "networks", "engine", "internal") != true {
		t.Errorf("docker-proxy networks %v, engine internal %v: want only the internal engine network", nets, get(c, "networks", "engine", "internal"))
	}
	if h := str(worker, "environment", "DOCKER_HOST"); h != "tcp://docker-proxy:2375" || str(worker, "user") == "root" {
		t.Errorf("worker: DOCKER_HOST %q, user %q: want the proxy, not root", h, str(worker, "user"))
	}
	for _, svc := range []string{"worker", "docker-proxy"} {
		if str(services[svc], "environment", "CODECRAFTER_SANDBOX_RUNTIME") != "${CODECRAFTER_SANDBOX_RUNTIME:-}" {
			t.Errorf("%s: CODECRAFTER_SANDBOX_RUNTIME must come from the one variable", svc)
		}
	}
	if !strings.Contains(nginx, "proxy_set_header Upgrade $http_upgrade") || strings.Contains(nginx, "ip_hash") || strings.Contains(nginx, "sticky") {
		t.Errorf("nginx.conf: WebSocket upgrades must pass and nothing may pin clients to a replica")
	}
}

// TestKubernetesScaleOut checks the manifests' scale-out and isolation:
// two or more API replicas without affinity, disruption budgets, the
// worker's engine behind the docker-proxy sidecar, and egress limited to
// what each pod needs.
func TestKubernetesScaleOut(t *testing.T) {
	t.Parallel()
	objects := map[key]doc{}
	files, _ := filepath.Glob("k8s/*.yaml")
	for _, f := range files {
		for _, d := range decodeAll(t, f) {
			objects[key{str(d, "kind"), str(d, "metadata", "name")}] = d
		}
	}
	api := objects[key{"Deployment", "api"}]
	if n, _ := get(api, "spec", "replicas").(uint64); n < 2 {
		t.Errorf("Deployment/api: %v replicas, want 2 or more", get(api, "spec", "replicas"))
	}
	if n, _ := get(objects[key{"HorizontalPodAutoscaler", "api"}], "spec", "minReplicas").(uint64); n < 2 {
		t.Errorf("HPA/api: minReplicas %v, want 2 or more", n)
	}
	if a := str(objects[key{"Service", "api"}], "spec", "sessionAffinity"); a != "" && a != "None" {
		t.Errorf("Service/api: sessionAffinity %q: no stickiness is needed", a)
	}
	for ann := range objects[key{"Ingress", "api"}]["metadata"].(map[string]any)["annotations"].(map[string]any) {
		if strings.Contains(ann, "affinity") {
			t.Errorf("Ingress/api: %s: no stickiness is needed", ann)
		}
	}
	for _, name := range []string{"api", "worker"} {
		if objects[key{"PodDisruptionBudget", name}] == nil {
			t.Errorf("no PodDisruptionBudget for %s", name)
		}
	}

	worker := objects[key{"Deployment", "worker"}]
	sockets := map[string]bool{}
	dockerHost := map[string]string{}
	for _, c := range list(worker, "spec", "template", "spec", "containers") {
		for _, m := range list(c, "volumeMounts") {
			sockets[str(c, "name")] = sockets[str(c, "name")] || str(m, "mountPath") == "/var/run/docker.sock"
		}
		for _, e := range list(c, "env") {
			if str(e, "name") == "DOCKER_HOST" {
				dockerHost[str(c, "name")] = str(e, "value")
			}
		}
	}
	if sockets["worker"] || !sockets["docker-proxy"] || dockerHost["worker"] != "tcp://127.0.0.1:2375" {
		t.Errorf("Deployment/worker: socket mounted in %v, worker DOCKER_HOST %q: want the socket in docker-proxy only and the worker on it",
			sockets, dockerHost["worker"])
	}

	// Egress: the backends get DNS only; api and worker the backends' ports.
	for k, np := range objects {
		if k.kind != "NetworkPolicy" || !slices.Contains(list(np, "spec", "policyTypes"), any("Egress")) {
			continue
		}
		if k.name == "default-deny-egress" {
			for _, e := range list(np, "spec", "egress") {
				for _, p := range list(e, "ports") {
					if fmt.Sprint(get(p, "port")) != "53" {
						t.Errorf("NetworkPolicy/%s: every pod may reach port %v", k.name, get(p, "port"))
					}
				}
			}
			continue
		}
		var selected []any
		for _, e := range list(np, "spec", "podSelector", "matchExpressions") {
			selected = append(selected, list(e, "values")...)
		}
		for _, backend := range []string{"store", "redis", "rabbitmq"} {
			if slices.Contains(selected, any(backend)) || str(np, "spec", "podSelector", "matchLabels", "app.kubernetes.io/name") == backend {
				t.Errorf("NetworkPolicy/%s gives %s egress: backends need none", k.name, backend)
			}
		}
		for _, e := range list(np, "spec", "egress") {
			for _, p := range list(e, "ports") {
				if port := fmt.Sprint(get(p, "port")); port != "27017" && port != "6379" && port != "5672" {
					t.Errorf("NetworkPolicy/%s allows egress to port %s", k.name, port)
				}
			}
		}
	}
}
