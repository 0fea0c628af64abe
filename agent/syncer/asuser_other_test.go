//go:build !unix

package syncer

import "testing"

// asUser: file permissions that keep a user out are tested on Unix.
func asUser(t *testing.T) bool {
	t.Skip("unreadable files are tested on Unix")
	return true
}
