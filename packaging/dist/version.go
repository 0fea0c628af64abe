package dist

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Stamp is what a build stamps: the version, the commit and its date.
type Stamp struct{ Version, Commit, Date string }

// FromGit derives the stamp from the git checkout at root: on a commit
// tagged vX.Y.Z the version is X.Y.Z; past one, or with no tag at all, it
// is a pre-release of the next patch that sorts by commit count
// (X.Y.(Z+1)-dev.N.gSHA, 0.0.0-dev.N.gSHA), what nfpm turns into
// X.Y.Z~dev... for deb and rpm. The date is the commit's, in UTC, so two
// builds of one commit are the same.
func FromGit(ctx context.Context, root string) (Stamp, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	var s Stamp
	var err error
	if s.Commit, err = git("rev-parse", "HEAD"); err != nil {
		return s, fmt.Errorf("dist: %w", err)
	}
	ct, err := git("log", "-1", "--format=%ct")
	if err != nil {
		return s, fmt.Errorf("dist: %w", err)
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return s, fmt.Errorf("dist: commit time %q: %w", ct, err)
	}
	s.Date = time.Unix(sec, 0).UTC().Format(time.RFC3339)
	desc, err := git("describe", "--tags", "--long", "--match", "v[0-9]*")
	if err != nil {
		// No release tag yet.
		n, err := git("rev-list", "--count", "HEAD")
		if err != nil {
			return s, fmt.Errorf("dist: %w", err)
		}
		desc = "v0.0.0-" + n + "-g" + s.Commit[:min(7, len(s.Commit))]
		s.Version, err = versionOf(desc, true)
		return s, err
	}
	s.Version, err = versionOf(desc, false)
	return s, err
}

var describeRE = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+?)?-(\d+)-g([0-9a-f]+)$`)

// versionOf turns `git describe --tags --long` output into the release
// version (see FromGit); untagged: no release tag exists (v0.0.0 stands in).
func versionOf(desc string, untagged bool) (string, error) {
	m := describeRE.FindStringSubmatch(desc)
	if m == nil {
		return "", fmt.Errorf("dist: cannot read a version from git describe %q (tags are vX.Y.Z)", desc)
	}
	major, minor, patch, pre, count, sha := m[1], m[2], m[3], m[4], m[5], m[6]
	if count == "0" && !untagged {
		return major + "." + minor + "." + patch + pre, nil
	}
	if !untagged && pre == "" {
		p, _ := strconv.Atoi(patch)
		patch = strconv.Itoa(p + 1)
	}
	if pre == "" {
		pre = "-dev"
	}
	return major + "." + minor + "." + patch + pre + "." + count + ".g" + sha, nil
}
