package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestBuildVersion: what --version says for a binary built without make's
// -ldflags.
func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "4449cc97d10bacb40ddd02be95613c76d321f601"
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "dev"},
		{"go install of a release", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"go build in a checkout", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261202121706-4449cc97d10b+dirty"}, Settings: vcs(rev, "true")},
			"v0.0.0-20261202121706-4449cc97d10b+dirty"},
		{"devel with a clean revision", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, "4449cc97d10b"},
		{"devel with a dirty revision", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}, "4449cc97d10b+dirty"},
		{"devel without version control", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	} {
		if got := buildVersion(tc.bi); got != tc.want {
			t.Errorf("%s: buildVersion = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestVersionScript: dist/version.sh turns git describe into a Debian
// version, in a scratch repository taken through untagged, tagged, later
// and dirty states.
func TestVersionScript(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	script, err := filepath.Abs("dist/version.sh")
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.net", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.net")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	commit := func() {
		t.Helper()
		git("commit", "-q", "--allow-empty", "-m", "c")
	}
	version := func() string {
		t.Helper()
		cmd := exec.Command(script)
		cmd.Dir = repo
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("version.sh: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	commit()
	commit()
	if got, want := version(), "0.0.0~git2."+git("rev-parse", "--short=7", "HEAD"); got != want {
		t.Errorf("untagged: %q, want %q", got, want)
	}
	if err := os.WriteFile(filepath.Join(repo, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "f")
	if got := version(); !strings.HasSuffix(got, "+dirty") || !strings.HasPrefix(got, "0.0.0~git2.") {
		t.Errorf("untagged with changes: %q, want 0.0.0~git2.<hash>+dirty", got)
	}
	commit()
	git("tag", "v1.2.0-rc1")
	if got := version(); got != "1.2.0~rc1" {
		t.Errorf("at v1.2.0-rc1: %q, want 1.2.0~rc1", got)
	}
	git("tag", "v1.2.0")
	if got := version(); got != "1.2.0" {
		t.Errorf("at v1.2.0: %q, want 1.2.0", got)
	}
	commit()
	commit()
	if got, want := version(), "1.2.0+git2.g"+git("rev-parse", "--short=7", "HEAD"); got != want {
		t.Errorf("two commits after v1.2.0: %q, want %q", got, want)
	}
	// The Debian order is the order of the history.
	if _, err := exec.LookPath("dpkg"); err == nil {
		for _, pair := range [][2]string{{"0.0.0~git2.abcdef0", "1.2.0~rc1"}, {"1.2.0~rc1", "1.2.0"}, {"1.2.0", "1.2.0+git2.gabcdef0"}, {"1.2.0+git2.gabcdef0", "1.2.0+git2.gabcdef0+dirty"}} {
			if err := exec.Command("dpkg", "--compare-versions", pair[0], "lt", pair[1]).Run(); err != nil {
				t.Errorf("dpkg does not order %s before %s", pair[0], pair[1])
			}
		}
	}
}
