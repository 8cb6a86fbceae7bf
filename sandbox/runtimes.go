package sandbox

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/codecrafter/codecrafter"
)

//go:embed runtimes.yaml
var defaultRuntimes []byte

// Language is everything the sandbox knows about one runtime.
type Language struct {
	ID          string            `yaml:"id"`
	Name        string            `yaml:"name"`
	Version     string            `yaml:"version"`
	Aliases     []string          `yaml:"aliases"`
	Image       string            `yaml:"image"`    // repository[:tag] built by BuildImages
	Packages    []string          `yaml:"packages"` // Debian packages in the image
	File        string            `yaml:"file"`     // the user's source file name
	ExtraFiles  map[string]string `yaml:"extraFiles"`
	Compile     []string          `yaml:"compile"` // argv; empty for interpreted languages
	Run         []string          `yaml:"run"`
	Env         map[string]string `yaml:"env"`
	MinMemoryMB int               `yaml:"minMemoryMb"`
}

// Runtime returns the language as the API shows it.
func (l *Language) Runtime() codecrafter.Runtime {
	return codecrafter.Runtime{Language: l.ID, Name: l.Name, Version: l.Version, Aliases: slices.Clone(l.Aliases)}
}

// Registry is the set of configured languages. It implements
// codecrafter.Runtimes and is safe for concurrent use (read-only).
type Registry struct {
	langs  []*Language
	lookup map[string]*Language // lower-cased id and aliases
}

var _ codecrafter.Runtimes = (*Registry)(nil)

// LoadRuntimes reads the registry from a YAML file, or the built-in one
// (python, javascript, typescript, go, c, cpp, java, ruby, rust, bash)
// when path is "".
func LoadRuntimes(path string) (*Registry, error) {
	data := defaultRuntimes
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("runtimes: %w", err)
		}
	}
	return ParseRuntimes(data)
}

// DefaultRuntimes returns the built-in registry.
func DefaultRuntimes() *Registry {
	r, err := ParseRuntimes(defaultRuntimes)
	if err != nil {
		panic(err) // the embedded file is tested
	}
	return r
}

var (
	idPattern      = regexp.MustCompile(`^[a-z0-9][a-z0-9+#._-]*$`)
	filePattern    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	packagePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`) // Debian policy
)

// ParseRuntimes parses and validates a registry document.
func ParseRuntimes(data []byte) (*Registry, error) {
	var doc struct {
		Languages []*Language `yaml:"languages"`
	}
	if err := yaml.UnmarshalWithOptions(data, &doc, yaml.DisallowUnknownField()); err != nil {
		return nil, fmt.Errorf("runtimes: %w", err)
	}
	if len(doc.Languages) == 0 {
		return nil, fmt.Errorf("runtimes: no languages")
	}
	r := &Registry{langs: doc.Languages, lookup: map[string]*Language{}}
	for _, l := range doc.Languages {
		if err := l.validate(); err != nil {
			return nil, fmt.Errorf("runtimes: %w", err)
		}
		for _, key := range append([]string{l.ID}, l.Aliases...) {
			key = strings.ToLower(key)
			if other, dup := r.lookup[key]; dup {
				return nil, fmt.Errorf("runtimes: %q names both %s and %s", key, other.ID, l.ID)
			}
			r.lookup[key] = l
		}
	}
	return r, nil
}

func (l *Language) validate() error {
	switch {
	case !idPattern.MatchString(l.ID):
		return fmt.Errorf("language id %q: want lower-case letters, digits and +#._-", l.ID)
	case l.Name == "" || l.Version == "":
		return fmt.Errorf("%s: name and version are required", l.ID)
	case l.Image == "" || strings.ContainsAny(l.Image, " \t@"):
		return fmt.Errorf("%s: image %q is not a plain name[:tag]", l.ID, l.Image)
	case len(l.Run) == 0:
		return fmt.Errorf("%s: run command is required", l.ID)
	case l.MinMemoryMB < 0:
		return fmt.Errorf("%s: minMemoryMb is negative", l.ID)
	}
	names := []string{l.File}
	for name := range l.ExtraFiles {
		names = append(names, name)
	}
	for _, name := range names {
		if !filePattern.MatchString(name) || filepath.Base(name) != name {
			return fmt.Errorf("%s: file name %q: want a plain name", l.ID, name)
		}
	}
	for _, p := range l.Packages {
		if !packagePattern.MatchString(p) {
			return fmt.Errorf("%s: package %q is not a Debian package name", l.ID, p)
		}
	}
	for k := range l.Env {
		if k == "" || strings.ContainsAny(k, "= ") {
			return fmt.Errorf("%s: bad env name %q", l.ID, k)
		}
	}
	return nil
}

// Runtimes lists every language in file order.
func (r *Registry) Runtimes() []codecrafter.Runtime {
	out := make([]codecrafter.Runtime, len(r.langs))
	for i, l := range r.langs {
		out[i] = l.Runtime()
	}
	return out
}

// Lookup finds a runtime by id or alias, ignoring case.
func (r *Registry) Lookup(language string) (codecrafter.Runtime, bool) {
	l, ok := r.Language(language)
	if !ok {
		return codecrafter.Runtime{}, false
	}
	return l.Runtime(), true
}

// Language finds a language by id or alias, ignoring case. The result is
// shared: do not modify it.
func (r *Registry) Language(language string) (*Language, bool) {
	l, ok := r.lookup[strings.ToLower(strings.TrimSpace(language))]
	return l, ok
}

// Languages lists the languages in file order (shared: do not modify).
func (r *Registry) Languages() []*Language { return slices.Clone(r.langs) }
