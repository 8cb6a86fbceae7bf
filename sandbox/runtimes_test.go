package sandbox_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codecrafter/codecrafter/sandbox"
)

func TestDefaultRuntimes(t *testing.T) {
	t.Parallel()
	reg, err := sandbox.LoadRuntimes("")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range reg.Runtimes() {
		ids = append(ids, r.Language)
		if r.Name == "" || r.Version == "" {
			t.Errorf("%s: empty name or version", r.Language)
		}
	}
	if got, want := strings.Join(ids, " "), "python javascript typescript go c cpp java ruby rust bash"; got != want {
		t.Errorf("languages %q, want %q", got, want)
	}
	for _, tc := range []struct{ name, want string }{
		{"python", "python"}, {"PY", "python"}, {" Python3 ", "python"}, {"js", "javascript"},
		{"Node", "javascript"}, {"ts", "typescript"}, {"golang", "go"}, {"C++", "cpp"}, {"rs", "rust"}, {"sh", "bash"},
	} {
		r, ok := reg.Lookup(tc.name)
		if !ok || r.Language != tc.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tc.name, r.Language, ok, tc.want)
		}
	}
	if _, ok := reg.Lookup("cobol"); ok {
		t.Error("Lookup(cobol) found something")
	}
	// Lookup results are copies: changing one does not change the registry.
	r, _ := reg.Lookup("python")
	r.Aliases[0] = "changed"
	if again, _ := reg.Lookup("python"); again.Aliases[0] == "changed" {
		t.Error("Lookup shares its aliases slice")
	}
}

func TestLoadRuntimesFile(t *testing.T) {
	t.Parallel()
	valid := "languages:\n  - id: lua\n    name: Lua\n    version: \"5.4\"\n    aliases: [LUA5]\n    image: example/lua:1\n" +
		"    packages: [lua5.4]\n    file: main.lua\n    run: [lua5.4, main.lua]\n    env: {LUA_PATH: /box/?.lua}\n"
	tests := []struct {
		name, doc, wantErr string
	}{
		{"valid", valid, ""},
		{"unknown field", valid + "    colour: red\n", "colour"},
		{"no languages", "languages: []\n", "no languages"},
		{"bad id", strings.Replace(valid, "id: lua", "id: Lua Script", 1), "language id"},
		{"no run", strings.Replace(valid, "    run: [lua5.4, main.lua]\n", "", 1), "run command"},
		{"path in file", strings.Replace(valid, "file: main.lua", "file: ../main.lua", 1), "file name"},
		{"bad package", strings.Replace(valid, "[lua5.4]", "[\"lua; rm -rf /\"]", 1), "package"},
		{"duplicate alias", strings.Replace(valid, "[LUA5]", "[lua]", 1), "names both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "runtimes.yaml")
			if err := os.WriteFile(path, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			reg, err := sandbox.LoadRuntimes(path)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				l, ok := reg.Language("lua5")
				if !ok || l.Image != "example/lua:1" || l.Env["LUA_PATH"] != "/box/?.lua" {
					t.Errorf("Language(lua5) = %+v, %v", l, ok)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
	if _, err := sandbox.LoadRuntimes(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
}
