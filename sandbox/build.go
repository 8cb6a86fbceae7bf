package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"
)

// LabelHash on an image records a hash of everything that went into it;
// BuildImages skips images whose label matches.
const LabelHash = "org.codecrafter.sandbox.hash"

// recipe versions: bump to force rebuilds when the build steps change.
const (
	baseRecipe = "base-v1"
	pkgsRecipe = "pkgs-v1"
	boxRecipe  = "box-v1"
)

// HelperPath is where ccbox lives in every image.
const HelperPath = "/usr/local/bin/ccbox"

// BuildOptions configures BuildImages.
type BuildOptions struct {
	Registry  *Registry // languages to build images for; DefaultRuntimes() when nil
	Languages []string  // ids to build; all when empty
	// Helper is a static ccbox binary; when "" it is built from this
	// module's source with the go command (BuildHelper).
	Helper string
	// CacheDir keeps debootstrap's .deb files between builds; default
	// <user cache dir>/codecrafter/debootstrap.
	CacheDir  string
	Mirror    string         // Debian mirror; default http://deb.debian.org/debian
	Suite     string         // default bookworm
	BaseImage string         // repository of the base image; default codecrafter/base
	Parallel  int            // language images built at once; default 2
	Force     bool           // rebuild even when current
	Docker    *client.Client // default: from the environment (DOCKER_HOST)
}

func (o *BuildOptions) defaults() error {
	if o.Registry == nil {
		o.Registry = DefaultRuntimes()
	}
	if o.Mirror == "" {
		o.Mirror = "http://deb.debian.org/debian"
	}
	if o.Suite == "" {
		o.Suite = "bookworm"
	}
	if o.BaseImage == "" {
		o.BaseImage = "codecrafter/base"
	}
	if o.Parallel <= 0 {
		o.Parallel = 2
	}
	if o.CacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		o.CacheDir = filepath.Join(dir, "codecrafter", "debootstrap")
	}
	var err error
	o.CacheDir, err = filepath.Abs(o.CacheDir)
	return err
}

// BuildImages builds, without any registry, a Debian base image with
// debootstrap and one image per language on top of it (its packages, then
// ccbox as a last small layer), skipping every image that is current.
// It needs root (debootstrap), tar and a Docker engine whose default
// bridge network reaches the mirror. Progress goes to progress.
func BuildImages(ctx context.Context, opts BuildOptions, progress io.Writer) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	langs, err := opts.languages()
	if err != nil {
		return err
	}
	cli := opts.Docker
	if cli == nil {
		if cli, err = client.New(client.FromEnv); err != nil {
			return err
		}
		defer cli.Close()
	}
	start := time.Now()
	log := &lineLog{w: progress}

	helper := opts.Helper
	if helper == "" {
		dir, err := os.MkdirTemp("", "ccbox-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		log.printf("", "building ccbox")
		if helper, err = BuildHelper(ctx, dir); err != nil {
			return err
		}
	}
	helperBin, err := os.ReadFile(helper)
	if err != nil {
		return fmt.Errorf("ccbox helper: %w", err)
	}

	base, err := buildBase(ctx, cli, opts, log)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Parallel)
	for _, l := range langs {
		g.Go(func() error { return buildLanguage(gctx, cli, opts, base, l, helperBin, log) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if len(opts.Languages) == 0 { // older bases may still serve languages not rebuilt
		pruneTags(ctx, cli, opts.BaseImage, "", base, log, "base")
	}
	log.printf("", "images ready in %s", time.Since(start).Round(time.Second))
	return nil
}

func (o *BuildOptions) languages() ([]*Language, error) {
	if len(o.Languages) == 0 {
		return o.Registry.Languages(), nil
	}
	var out []*Language
	for _, id := range o.Languages {
		l, ok := o.Registry.Language(id)
		if !ok {
			return nil, fmt.Errorf("images: unknown language %q", id)
		}
		out = append(out, l)
	}
	return out, nil
}

// BuildHelper compiles cmd/ccbox as a static binary into dir and returns
// its path. It needs the go command and this module's source (the working
// directory must be inside the module).
func BuildHelper(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "ccbox")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out,
		"github.com/codecrafter/codecrafter/cmd/ccbox")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ccbox: %v: %s", err, b)
	}
	return out, nil
}

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// imageHash returns the image's LabelHash, "" when it does not exist.
func imageHash(ctx context.Context, cli *client.Client, ref string) (string, error) {
	res, err := cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if res.Config == nil || res.Config.Labels == nil {
		return "-", nil
	}
	return res.Config.Labels[LabelHash], nil
}

// baseFiles are written into the base rootfs: no docs or translations in
// later installs, no recommends, and the mirror for language layers.
func baseFiles(o BuildOptions) map[string]string {
	return map[string]string{
		"etc/dpkg/dpkg.cfg.d/01-codecrafter-nodoc": "path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\n" +
			"path-exclude=/usr/share/info/*\npath-exclude=/usr/share/locale/*\npath-include=/usr/share/locale/locale.alias\n",
		"etc/apt/apt.conf.d/01-codecrafter": "APT::Install-Recommends \"0\";\nAPT::Install-Suggests \"0\";\n" +
			"Acquire::Languages \"none\";\nDpkg::Use-Pty \"0\";\n",
		"etc/apt/sources.list": fmt.Sprintf("deb %s %s main\n", o.Mirror, o.Suite),
	}
}

// buildBase debootstraps a minimal Debian and imports it, unless an image
// with the same recipe exists. It returns the base image reference.
func buildBase(ctx context.Context, cli *client.Client, o BuildOptions, log *lineLog) (string, error) {
	files := baseFiles(o)
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k+"="+files[k])
	}
	slices.Sort(keys)
	hash := hashOf(append([]string{baseRecipe, o.Suite, o.Mirror}, keys...)...)
	ref := o.BaseImage + ":" + hash[:16]
	if have, err := imageHash(ctx, cli, ref); err != nil {
		return "", err
	} else if have == hash && !o.Force {
		log.printf("base", "%s is current", ref)
		return ref, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("images: debootstrap needs root (run the image build with sudo)")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", errors.New("images: debootstrap not found (apt-get install debootstrap)")
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "codecrafter-rootfs-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")

	start := time.Now()
	log.printf("base", "debootstrap %s (cache %s)", o.Suite, o.CacheDir)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--cache-dir="+o.CacheDir,
		o.Suite, rootfs, o.Mirror)
	cmd.Stdout, cmd.Stderr = log.writer("base"), log.writer("base")
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("images: debootstrap: %w", err)
	}
	for name, data := range files {
		p := filepath.Join(rootfs, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "box"), 0o755); err != nil {
		return "", err
	}

	log.printf("base", "importing %s", ref)
	tarCmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "-C", rootfs,
		"--exclude=./var/cache/apt/archives/*.deb", "--exclude=./var/cache/apt/*.bin",
		"--exclude=./var/lib/apt/lists/*", "--exclude=./usr/share/doc/*", "--exclude=./usr/share/man/*",
		"--exclude=./usr/share/info/*", "--exclude=./usr/share/locale/*", "--exclude=./var/log/*",
		"-c", ".")
	stream, err := tarCmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	tarCmd.Stderr = log.writer("base")
	if err := tarCmd.Start(); err != nil {
		return "", err
	}
	res, err := cli.ImageImport(ctx, client.ImageImportSource{Source: stream, SourceName: "-"}, ref,
		client.ImageImportOptions{Changes: []string{"LABEL " + LabelHash + "=" + hash}})
	if err == nil {
		err = drainJSON(res, log, "base")
		res.Close()
	}
	if werr := tarCmd.Wait(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return "", fmt.Errorf("images: import base: %w", err)
	}
	log.printf("base", "%s built in %s", ref, time.Since(start).Round(time.Second))
	return ref, nil
}

// buildLanguage builds <image-repo>:pkgs-<hash> (base plus packages) and
// then the language image itself (plus ccbox), each only when stale.
func buildLanguage(ctx context.Context, cli *client.Client, o BuildOptions, base string, l *Language, helper []byte, log *lineLog) error {
	pkgs := slices.Sorted(slices.Values(l.Packages))
	run := "true"
	if len(pkgs) > 0 {
		// openjdk's postinst needs the man1 directory the base trims.
		run = "mkdir -p /usr/share/man/man1 && apt-get update -q && " +
			"DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends " + strings.Join(pkgs, " ") +
			" && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/* /usr/share/man/*"
	}
	// Images are named by a hash of their Dockerfile (which names the
	// parent by its hash): any change in the recipe rebuilds them.
	dockerfile := fmt.Sprintf("FROM %s\nRUN %s\n", base, run)
	pkgHash := hashOf(pkgsRecipe, dockerfile)
	pkgRef := repository(l.Image) + ":pkgs-" + pkgHash[:16]
	have, err := imageHash(ctx, cli, pkgRef)
	if err != nil {
		return err
	}
	if have != pkgHash || o.Force {
		start := time.Now()
		log.printf(l.ID, "installing %s", strings.Join(pkgs, " "))
		dockerfile += fmt.Sprintf("LABEL %s=%s\n", LabelHash, pkgHash)
		if err := dockerBuild(ctx, cli, pkgRef, dockerfile, nil, log, l.ID); err != nil {
			return err
		}
		log.printf(l.ID, "%s built in %s", pkgRef, time.Since(start).Round(time.Second))
	}

	sum := sha256.Sum256(helper)
	dockerfile = fmt.Sprintf("FROM %s\nCOPY ccbox %s\nUSER 65534:65534\nWORKDIR /box\nENTRYPOINT [%q]\n",
		pkgRef, HelperPath, HelperPath)
	boxHash := hashOf(boxRecipe, dockerfile, hex.EncodeToString(sum[:]))
	if have, err = imageHash(ctx, cli, l.Image); err != nil {
		return err
	}
	defer pruneTags(ctx, cli, repository(l.Image), "pkgs-", pkgRef, log, l.ID)
	if have == boxHash && !o.Force {
		log.printf(l.ID, "%s is current", l.Image)
		return nil
	}
	dockerfile += fmt.Sprintf("LABEL %s=%s\n", LabelHash, boxHash)
	old, _ := cli.ImageInspect(ctx, l.Image)
	if err := dockerBuild(ctx, cli, l.Image, dockerfile, map[string][]byte{"ccbox": helper}, log, l.ID); err != nil {
		return err
	}
	log.printf(l.ID, "%s ready", l.Image)
	if old.ID != "" {
		removeImage(ctx, cli, old.ID, log, l.ID) // now untagged
	}
	return nil
}

// pruneTags removes the repository's images tagged prefix* other than
// keep: what earlier builds left behind.
func pruneTags(ctx context.Context, cli *client.Client, repo, prefix, keep string, log *lineLog, who string) {
	list, err := cli.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", repo+":"+prefix+"*")})
	if err != nil {
		return
	}
	for _, img := range list.Items {
		for _, tag := range img.RepoTags {
			if tag != keep && strings.HasPrefix(tag, repo+":"+prefix) {
				removeImage(ctx, cli, tag, log, who)
			}
		}
	}
}

// removeImage removes an outdated image; one still used by a container
// stays (and is logged).
func removeImage(ctx context.Context, cli *client.Client, ref string, log *lineLog, who string) {
	if _, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
		log.printf(who, "keeping outdated image %s: %v", ref, err)
		return
	}
	log.printf(who, "removed outdated image %s", ref)
}

// repository strips the tag from an image reference.
func repository(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i]
	}
	return ref
}

// dockerBuild builds one image with the classic builder from a Dockerfile
// and extra files (mode 0755) sent as the context.
func dockerBuild(ctx context.Context, cli *client.Client, tag, dockerfile string, files map[string][]byte, log *lineLog, prefix string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte, mode int64) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("Dockerfile", []byte(dockerfile), 0o644); err != nil {
		return err
	}
	for name, data := range files {
		if err := add(name, data, 0o755); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("images: build %s: %w", tag, err)
	}
	defer res.Body.Close()
	if err := drainJSON(res.Body, log, prefix); err != nil {
		return fmt.Errorf("images: build %s: %w", tag, err)
	}
	return nil
}

// drainJSON copies a daemon JSON message stream to the log and returns
// the first error message in it.
func drainJSON(r io.Reader, log *lineLog, prefix string) error {
	dec := json.NewDecoder(r)
	w := log.writer(prefix)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
		if m.Stream != "" {
			io.WriteString(w, m.Stream)
		}
	}
}

// lineLog writes whole, prefixed lines from concurrent builds.
type lineLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineLog) printf(prefix, format string, args ...any) {
	if l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if prefix != "" {
		prefix = "[" + prefix + "] "
	}
	fmt.Fprintf(l.w, "%s%s\n", prefix, fmt.Sprintf(format, args...))
}

// writer returns a writer that logs each complete line with prefix.
func (l *lineLog) writer(prefix string) io.Writer { return &lineWriter{log: l, prefix: prefix} }

type lineWriter struct {
	log    *lineLog
	prefix string
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexAny(w.buf, "\r\n")
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(w.buf[:i])); line != "" {
			w.log.printf(w.prefix, "%s", line)
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}
