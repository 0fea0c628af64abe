// Package testenv is the one rule for a test whose dependency this machine
// lacks (a program, a server, a kernel feature): a developer's run skips
// the test, and a CI run (CI set in the environment, as .ci/run has it)
// fails it, since there a missing dependency is a broken setup, not a pass.
package testenv

import (
	"os"
	"testing"
)

// UnderCI reports whether the tests run under CI (CI is set).
func UnderCI() bool { return os.Getenv("CI") != "" }

// Require returns if err is nil. Otherwise what (the dependency, with a
// hint at where it comes from) is missing: it fails tb under CI and skips
// it elsewhere, saying err.
func Require(tb testing.TB, what string, err error) {
	tb.Helper()
	require(tb, UnderCI(), what, err)
}

// Optional is Require for one part of a test: it reports whether err is
// nil; otherwise it fails tb under CI, and elsewhere logs that the part
// needing what is left out and returns false, so the rest runs on.
func Optional(tb testing.TB, what string, err error) bool {
	tb.Helper()
	return optional(tb, UnderCI(), what, err)
}

// reporter is the part of testing.TB the rule uses.
type reporter interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
}

func require(r reporter, ci bool, what string, err error) {
	r.Helper()
	switch {
	case err == nil:
	case ci:
		r.Fatalf("%s is required under CI: %v", what, err)
	default:
		r.Skipf("%s is not available here: %v", what, err)
	}
}

func optional(r reporter, ci bool, what string, err error) bool {
	r.Helper()
	switch {
	case err == nil:
		return true
	case ci:
		r.Fatalf("%s is required under CI: %v", what, err)
	default:
		r.Logf("%s is not available here, that part is left out: %v", what, err)
	}
	return false
}
