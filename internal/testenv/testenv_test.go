package testenv

import (
	"errors"
	"fmt"
	"testing"
)

type recorder struct{ calls []string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(f string, a ...any) {
	r.calls = append(r.calls, "fatal: "+fmt.Sprintf(f, a...))
}
func (r *recorder) Skipf(f string, a ...any) {
	r.calls = append(r.calls, "skip: "+fmt.Sprintf(f, a...))
}
func (r *recorder) Logf(f string, a ...any) { r.calls = append(r.calls, "log: "+fmt.Sprintf(f, a...)) }

func TestRule(t *testing.T) {
	missing := errors.New("not found")
	for _, tt := range []struct {
		name         string
		ci           bool
		err          error
		wantRequire  string // the one call Require makes, "" for none
		wantOptional string
		wantOK       bool
	}{
		{"present", false, nil, "", "", true},
		{"present under CI", true, nil, "", "", true},
		{"missing", false, missing,
			"skip: dbus (Debian package dbus) is not available here: not found",
			"log: dbus (Debian package dbus) is not available here, that part is left out: not found", false},
		{"missing under CI", true, missing,
			"fatal: dbus (Debian package dbus) is required under CI: not found",
			"fatal: dbus (Debian package dbus) is required under CI: not found", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r recorder
			require(&r, tt.ci, "dbus (Debian package dbus)", tt.err)
			if got := fmt.Sprint(r.calls); got != fmt.Sprint(nonEmpty(tt.wantRequire)) {
				t.Errorf("require: %s, want %v", got, nonEmpty(tt.wantRequire))
			}
			r = recorder{}
			ok := optional(&r, tt.ci, "dbus (Debian package dbus)", tt.err)
			if got := fmt.Sprint(r.calls); ok != tt.wantOK || got != fmt.Sprint(nonEmpty(tt.wantOptional)) {
				t.Errorf("optional: %v %s, want %v %v", ok, got, tt.wantOK, nonEmpty(tt.wantOptional))
			}
		})
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func TestUnderCI(t *testing.T) {
	for _, tt := range []struct {
		env  string
		want bool
	}{{"", false}, {"true", true}, {"1", true}} {
		t.Setenv("CI", tt.env)
		if got := UnderCI(); got != tt.want {
			t.Errorf("CI=%q: UnderCI() = %v, want %v", tt.env, got, tt.want)
		}
	}
}
