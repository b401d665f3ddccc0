package main

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDebPackages installs the packages of `make deb` into a scratch root
// with dpkg --root, checks what landed where, upgrades them with a local
// change to the conffile, removes and purges them. make test passes the
// packages it built in HACRON_DEBS; without it the test builds its own.
func TestDebPackages(t *testing.T) {
	for _, tool := range []string{"dpkg", "dpkg-deb", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the packages cannot be built or inspected here", tool)
		}
	}
	dir := os.Getenv("HACRON_DEBS")
	if dir == "" {
		if testing.Short() {
			t.Skip("builds the packages (seconds to minutes); make test runs it with the packages it built")
		}
		dir = makeDeb(t, "")
	}
	hacronDeb, rcronDeb := findDebs(t, dir)
	version := debField(t, hacronDeb, "Version")

	// The control data.
	for _, c := range []struct{ deb, field, want string }{
		{hacronDeb, "Package", "hacron"},
		{hacronDeb, "Recommends", "zookeeper"},
		{rcronDeb, "Package", "hacron-rcron"},
		{rcronDeb, "Version", version},
		{rcronDeb, "Depends", "hacron (= " + version + ")"},
		{rcronDeb, "Provides", "rcron"},
		{rcronDeb, "Conflicts", "rcron"},
		{rcronDeb, "Replaces", "rcron"},
	} {
		if got := debField(t, c.deb, c.field); got != c.want {
			t.Errorf("%s %s: %q, want %q", filepath.Base(c.deb), c.field, got, c.want)
		}
	}
	if got := debOutput(t, "-I", hacronDeb, "conffiles"); strings.TrimSpace(got) != "/etc/hacron/hacron.conf" {
		t.Errorf("conffiles: %q, want /etc/hacron/hacron.conf", got)
	}

	root := t.TempDir()
	installed := os.Geteuid() == 0
	if installed {
		dpkgRoot(t, root, "--install", hacronDeb, rcronDeb)
	} else {
		// dpkg --root needs root to set owners; look at the contents instead.
		t.Logf("not root: unpacking with dpkg-deb -x instead of installing (no maintainer scripts, no upgrade)")
		for _, deb := range []string{hacronDeb, rcronDeb} {
			if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
				t.Fatalf("dpkg-deb -x %s: %v\n%s", deb, err, out)
			}
		}
	}

	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{"/usr/bin/hacron", 0o755},
		{"/lib/systemd/system/hacron-agent.service", 0o644},
		{"/etc/hacron/hacron.conf", 0o644},
		{"/usr/share/man/man1/hacron.1.gz", 0o644},
		{"/usr/share/man/man5/hacron.conf.5.gz", 0o644},
		{"/usr/share/bash-completion/completions/hacron", 0o644},
		{"/usr/share/zsh/vendor-completions/_hacron", 0o644},
		{"/usr/share/fish/vendor_completions.d/hacron.fish", 0o644},
		{"/usr/share/doc/hacron/copyright", 0o644},
		{"/usr/share/doc/hacron/contract.md", 0o644},
		{"/var/log/hacron", os.ModeDir | 0o750},
	} {
		st, err := os.Stat(root + f.path)
		if err != nil {
			t.Errorf("not installed: %v", err)
			continue
		}
		if st.Mode() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, st.Mode(), f.mode)
		}
	}
	if l, err := os.Readlink(root + "/usr/bin/rcron"); err != nil || l != "hacron" {
		t.Errorf("/usr/bin/rcron: %q %v, want a symlink to hacron", l, err)
	}
	unit, err := os.ReadFile(root + "/lib/systemd/system/hacron-agent.service")
	if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/bin/hacron agent") {
		t.Errorf("the unit does not start /usr/bin/hacron (%v):\n%s", err, unit)
	}

	// The binary says the package's version, and answers as rcron through
	// the symlink (its usage error is rcron's exit 1).
	out, err := exec.Command(root+"/usr/bin/hacron", "--version").Output()
	if err != nil || strings.TrimSpace(string(out)) != version {
		t.Errorf("hacron --version: %q %v, want %q", out, err, version)
	}
	cmd := exec.Command(root + "/usr/bin/rcron")
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "usage: rcron") {
		t.Errorf("rcron without arguments: %q %v, want rcron's usage and exit 1", out, err)
	}
	checkLibcDepends(t, root+"/usr/bin/hacron", debField(t, hacronDeb, "Depends"))
	if bi, err := buildinfo.ReadFile(root + "/usr/bin/hacron"); err != nil {
		t.Errorf("build info: %v", err)
	} else {
		for _, d := range bi.Deps {
			if strings.HasPrefix(d.Path, "github.com/goreleaser/") || strings.HasPrefix(d.Path, "github.com/golangci/") {
				t.Errorf("the packaged binary links %s", d.Path)
			}
		}
	}
	checkManRenders(t, root)

	if !installed {
		return
	}
	if s := dpkgStatus(t, root, "hacron"); s != "install ok installed" {
		t.Fatalf("hacron after install: %q", s)
	}

	// Upgrade: the administrator's config survives, the version moves.
	conf := root + "/etc/hacron/hacron.conf"
	local := "\n# local change: kept across upgrades\n"
	appendFile(t, conf, local)
	next := version + "+1"
	newHacron, newRcron := findDebs(t, makeDeb(t, next))
	dpkgRoot(t, root, "--install", newHacron, newRcron)
	if b, err := os.ReadFile(conf); err != nil || !strings.HasSuffix(string(b), local) {
		t.Errorf("the upgrade lost the local change to hacron.conf (%v):\n%s", err, b)
	}
	if out, err := exec.Command(root+"/usr/bin/hacron", "--version").Output(); err != nil || strings.TrimSpace(string(out)) != next {
		t.Errorf("hacron --version after the upgrade: %q %v, want %q", out, err, next)
	}

	// Remove keeps the config; purge takes it and the log directory.
	dpkgRoot(t, root, "--remove", "hacron-rcron", "hacron")
	for _, gone := range []string{"/usr/bin/hacron", "/usr/bin/rcron", "/lib/systemd/system/hacron-agent.service"} {
		if _, err := os.Lstat(root + gone); err == nil {
			t.Errorf("%s is still there after dpkg --remove", gone)
		}
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("dpkg --remove took the config: %v", err)
	}
	if s := dpkgStatus(t, root, "hacron"); s != "deinstall ok config-files" {
		t.Errorf("hacron after remove: %q", s)
	}
	dpkgRoot(t, root, "--purge", "hacron")
	for _, gone := range []string{"/etc/hacron/hacron.conf", "/var/log/hacron"} {
		if _, err := os.Stat(root + gone); err == nil {
			t.Errorf("%s is still there after dpkg --purge", gone)
		}
	}
}

// makeDeb runs make deb into a temporary directory, with version if given.
func makeDeb(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"deb", "DEBDIR=" + dir}
	if version != "" {
		args = append(args, "VERSION="+version)
	}
	if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return dir
}

func findDebs(t *testing.T, dir string) (hacron, rcron string) {
	t.Helper()
	find := func(pattern string) string {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil || len(m) != 1 {
			t.Fatalf("want one %s in %s, found %q (%v)", pattern, dir, m, err)
		}
		return m[0]
	}
	return find("hacron_*.deb"), find("hacron-rcron_*.deb")
}

func debOutput(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", args...).Output()
	if err != nil {
		t.Fatalf("dpkg-deb %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func debField(t *testing.T, deb, field string) string {
	t.Helper()
	return strings.TrimSpace(debOutput(t, "-f", deb, field))
}

// dpkgRoot runs dpkg on the scratch root. The maintainer scripts run
// outside it (chrootless: the root has no shell) with DPKG_ROOT set, which
// they honour by leaving the host's systemd alone; libc6 is not installed
// there, hence --force-depends.
func dpkgRoot(t *testing.T, root string, args ...string) {
	t.Helper()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	full := append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends", "--force-confold"}, args...)
	cmd := exec.Command("dpkg", full...)
	// dpkg wants ldconfig and start-stop-daemon on PATH.
	cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(full, " "), err, out)
	}
}

func dpkgStatus(t *testing.T, root, pkg string) string {
	t.Helper()
	out, _ := exec.Command("dpkg-query", "--root="+root, "-W", "-f=${Status}", pkg).Output()
	return strings.TrimSpace(string(out))
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkLibcDepends: the package's libc6 minimum covers every versioned
// glibc symbol the binary uses, so apt refuses a host whose C library is
// too old instead of installing a binary that cannot start.
func checkLibcDepends(t *testing.T, bin, depends string) {
	t.Helper()
	m := regexp.MustCompile(`libc6 \(>= ([0-9.]+)\)`).FindStringSubmatch(depends)
	if m == nil {
		t.Errorf("Depends %q names no libc6 minimum", depends)
		return
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		t.Fatal(err)
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return // a static binary: nothing to check
	}
	for _, s := range syms {
		if v, ok := strings.CutPrefix(s.Version, "GLIBC_"); ok && versionLess(m[1], v) {
			t.Errorf("%s needs %s from glibc %s; Depends says libc6 (>= %s)", filepath.Base(bin), s.Name, v, m[1])
		}
	}
}

// versionLess compares dotted numbers numerically: 2.4 < 2.34.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// checkManRenders renders the installed pages with man-db, where present.
func checkManRenders(t *testing.T, root string) {
	t.Helper()
	if _, err := exec.LookPath("man"); err != nil {
		t.Logf("man is not installed: the pages are not rendered")
		return
	}
	for page, want := range map[string]string{
		"/usr/share/man/man1/hacron.1.gz":      "EXIT STATUS",
		"/usr/share/man/man5/hacron.conf.5.gz": "session_timeout",
	} {
		cmd := exec.Command("man", "-l", root+page)
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=80", "LC_ALL=C.UTF-8")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("man -l %s: %v\n%s", page, err, out)
		}
	}
}
