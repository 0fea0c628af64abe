//go:build !windows

package ipc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// staleDialTimeout bounds the dial [Listen] makes to an existing socket.
const staleDialTimeout = time.Second

// Listen creates the daemon's socket at path. It creates the parent
// directory (mode 0700) if needed and refuses one owned by another user. If
// a socket file is already there it dials it first: if a daemon answers,
// Listen fails with [ErrDaemonRunning]; otherwise the stale file is removed.
// The socket's mode is set to 0600. Closing the listener removes the file.
func Listen(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("ipc listen: socket path %q is %d bytes, more than the %d a unix socket allows: set BM_AGENT_HOME to a shorter directory", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ipc listen: create socket dir: %w", err)
	}
	if err := checkDirOwner(dir); err != nil {
		return nil, fmt.Errorf("ipc listen: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, fmt.Errorf("ipc listen: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("ipc listen %s: %w", path, ErrDaemonRunning)
		}
		return nil, fmt.Errorf("ipc listen: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("ipc listen: chmod socket: %w", err)
	}
	return ln, nil
}

// removeStale removes a socket file at path that no daemon answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; not removing it", path)
	}
	c, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("socket %s: %w", path, ErrDaemonRunning)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// checkDirOwner refuses a socket directory owned by another user (root
// aside), and one that others may write to without the sticky bit:
// whoever owns it, or may write to it, could swap the socket for their
// own. The error says how to make it safe.
func checkDirOwner(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("stat socket dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("socket dir %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Getuid(); int(st.Uid) != uid && st.Uid != 0 {
		return fmt.Errorf("socket dir %s is owned by uid %d, not by this user (uid %d)", dir, st.Uid, uid)
	}
	if m := fi.Mode(); m.Perm()&0o022 != 0 && m&fs.ModeSticky == 0 {
		return fmt.Errorf("socket dir %s may be written by other users (mode %04o), who could put their own socket in the daemon's place: run chmod go-w %s (or set BM_AGENT_HOME to a directory of yours)", dir, m.Perm(), dir)
	}
	return nil
}

// Dial connects once to the daemon's socket at path. If nothing is there or
// nothing answers, the error wraps [ErrNoDaemon].
func Dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("dial %s: %w", path, ErrNoDaemon)
		}
		return nil, fmt.Errorf("ipc dial: %w", err)
	}
	return c, nil
}
