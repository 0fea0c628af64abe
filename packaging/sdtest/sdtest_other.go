//go:build !linux

package sdtest

import "testing"

// Enter skips the test: systemd user instances are Linux's.
func Enter(t *testing.T, env ...string) bool {
	t.Helper()
	t.Skip("a systemd user instance needs Linux")
	return false
}

// Unit is empty: there is no systemd here.
func Unit(t *testing.T, unit, prop string) string { return "" }
