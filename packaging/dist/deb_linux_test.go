package dist

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
)

// TestDebInstallsAndRemoves builds the .deb and .rpm for this machine (one
// target, no archives), checks the rpm's file list with `rpm -qpl`, installs
// the deb with dpkg -i, checks its files, runs the
// installed binaries' --version and systemd-analyze verify on the
// installed units, then removes it with dpkg -r and checks nothing of it
// is left. It installs into the machine, so it runs as root only (CI);
// elsewhere it skips, and under CI a missing dpkg or root fails it.
func TestDebInstallsAndRemoves(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	testenv.Require(t, "dpkg (a Debian machine)", err)
	if os.Geteuid() != 0 {
		testenv.Require(t, "root (dpkg -i installs into this machine)", errors.New("not running as root"))
	}
	analyze, err := exec.LookPath("systemd-analyze")
	testenv.Require(t, "systemd-analyze (Debian package systemd)", err)
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", Project).Output(); err == nil && strings.Contains(string(out), "installed") && !strings.Contains(string(out), "not-installed") && !testenv.UnderCI() {
		t.Skipf("a %s package is installed here already (%s): not replacing it outside CI", Project, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	rel, stamp := buildForHost(ctx, t, []string{"deb", "rpm"})
	var deb, rpm string
	for _, a := range rel.Artifacts {
		switch a.Kind {
		case "deb":
			deb = a.Path
		case "rpm":
			rpm = a.Path
		}
	}
	if deb == "" || rpm == "" {
		t.Fatalf("no deb or rpm among %+v", rel.Artifacts)
	}
	checkRPM(t, rpm)

	dpkgRun(t, dpkg, "-i", deb)
	t.Cleanup(func() {
		// Whatever happened above, the machine is left without the package.
		_ = exec.Command(dpkg, "-P", Project).Run()
	})
	listed := dpkgList(t)
	want := PackageFiles("deb")
	for _, f := range want {
		fi, err := os.Stat(f)
		if err != nil {
			t.Errorf("installed package lacks %s: %v", f, err)
			continue
		}
		if strings.HasPrefix(f, BinDir+"/") && fi.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v, want 0755", f, fi.Mode().Perm())
		}
		if !listed[f] {
			t.Errorf("dpkg -L does not list %s", f)
		}
	}
	for f := range listed {
		if fi, err := os.Stat(f); err == nil && !fi.IsDir() && !contains(want, f) {
			t.Errorf("the package holds %s, which PackageFiles does not name", f)
		}
	}
	for _, b := range Binaries {
		out, err := exec.Command(BinDir+"/"+b, "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), b+" "+stamp.Version+" (commit "+stamp.Commit[:12]+", "+stamp.Date) {
			t.Errorf("%s --version: %v: %q, want %s %s (commit %s, %s, ...)", b, err, out, b, stamp.Version, stamp.Commit[:12], stamp.Date)
		}
	}
	// As packaging's own test runs it: a user unit checks the same way
	// (--user needs a user session this machine may not have).
	for _, unit := range []string{UserUnit, ServerUnit} {
		out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
	for _, f := range []string{TrayApp, TrayStartup} {
		b, _ := os.ReadFile(f)
		if !strings.Contains(string(b), `Exec="/usr/bin/bm-tray"`) || !strings.Contains(string(b), "Icon="+IconName+"\n") {
			t.Errorf("%s:\n%s", f, b)
		}
	}

	dpkgRun(t, dpkg, "-r", Project)
	for f := range listed {
		if fi, err := os.Lstat(f); err == nil && !fi.IsDir() {
			t.Errorf("%s left after dpkg -r", f)
		}
	}
	for _, d := range []string{"/usr/share/doc/bm-agent", "/usr/share/icons/hicolor/22x22/apps/" + IconName + ".png"} {
		if _, err := os.Lstat(d); err == nil {
			t.Errorf("%s left after dpkg -r", d)
		}
	}
	// dpkg keeps a removed package that has a postrm as "config-files"
	// until a purge; this one has no conffiles, so nothing is on disk.
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}|${Conffiles}", Project).CombinedOutput(); !strings.HasPrefix(string(out), "deinstall ok config-files|") || strings.TrimPrefix(string(out), "deinstall ok config-files|") != "" {
		t.Errorf("after dpkg -r the package is %q, want removed with no conffiles", out)
	}
	dpkgRun(t, dpkg, "-P", Project)
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", Project).CombinedOutput(); err == nil && !strings.Contains(string(out), "not-installed") {
		t.Errorf("after dpkg -P the package is %q, want unknown to dpkg", out)
	}
}

// checkRPM reads the rpm's file list and header with the rpm tool, where
// it is installed (CI installs it): the files PackageFiles names, and
// nothing under /etc marked as a config file.
func checkRPM(t *testing.T, path string) {
	t.Helper()
	rpmTool, err := exec.LookPath("rpm")
	if !testenv.Optional(t, "rpm (Debian package rpm), to read the .rpm", err) {
		return
	}
	out, err := exec.Command(rpmTool, "-qp", "--list", path).CombinedOutput()
	if err != nil {
		t.Fatalf("rpm -qpl %s: %v\n%s", path, err, out)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		listed[strings.TrimSpace(l)] = true
	}
	for _, f := range PackageFiles("rpm") {
		if !listed[f] {
			t.Errorf("the rpm lacks %s; it lists:\n%s", f, out)
		}
	}
	if out, err := exec.Command(rpmTool, "-qp", "--configfiles", path).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("rpm -qp --configfiles: %v: %s, want none", err, out)
	}
}

// buildForHost builds the given packages for this machine's linux target
// into a temp dir, stamped as make dist would stamp them (so the build
// cache serves both).
func buildForHost(ctx context.Context, t *testing.T, formats []string) (*Release, Stamp) {
	t.Helper()
	root := moduleRoot(t)
	stamp, err := FromGit(ctx, root)
	if err != nil {
		t.Logf("no git stamp (%v): a fixed one", err)
		stamp = Stamp{Version: "0.0.0-test", Commit: "0123456789abcdef0123456789abcdef01234567", Date: "2026-01-02T03:04:05Z"}
	}
	start := time.Now()
	var log bytes.Buffer
	rel, err := Build(ctx, Config{Root: root, Out: t.TempDir(), Version: stamp.Version, Commit: stamp.Commit, Date: stamp.Date,
		Targets: []Target{{"linux", runtime.GOARCH}}, Packages: formats, Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("built %v for linux/%s in %s:\n%s", formats, runtime.GOARCH, time.Since(start).Round(time.Second), log.String())
	return rel, stamp
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(string(bytes.TrimSpace(out)))
}

func dpkgRun(t *testing.T, dpkg string, args ...string) {
	t.Helper()
	cmd := exec.Command(dpkg, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// dpkgList is the set of paths dpkg -L names for the installed package.
func dpkgList(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("dpkg", "-L", Project).Output()
	if err != nil {
		t.Fatalf("dpkg -L: %v", err)
	}
	set := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if p := strings.TrimSpace(sc.Text()); strings.HasPrefix(p, "/") && p != "/." {
			set[p] = true
		}
	}
	return set
}
