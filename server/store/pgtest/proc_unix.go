//go:build unix

package pgtest

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// procUser is who postgres runs as: nil for the test's own user.
type procUser struct{ cred *syscall.Credential }

// runAs returns who postgres runs as: the test's user when not root, else
// the postgres user (or nobody).
func runAs() (procUser, error) {
	if os.Geteuid() != 0 {
		return procUser{}, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return procUser{&syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}, nil
	}
	return procUser{}, errors.New("pgtest: running as root and neither the postgres nor the nobody user exists")
}

// own gives dir to the user.
func (u procUser) own(dir string) error {
	if u.cred == nil {
		return nil
	}
	return os.Chown(dir, int(u.cred.Uid), int(u.cred.Gid))
}

// apply runs cmd as the user; a server is also bound to the test's life
// where the platform can (bindToParent).
func (u procUser) apply(cmd *exec.Cmd, server bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	if server {
		bindToParent(cmd.SysProcAttr)
	}
}
