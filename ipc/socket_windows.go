package ipc

// The Windows transport is a named pipe (go-winio). It is compile-checked
// here with `GOOS=windows go vet ./ipc/` only: no Windows machine runs these
// tests yet.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// pipePrefix starts every named pipe path.
const pipePrefix = `\\.\pipe\`

// PipeName returns the named pipe that stands for the socket path: path
// itself when it already names a pipe, else a pipe named after a hash of
// the path (so two homes get two pipes).
func PipeName(path string) string {
	if strings.HasPrefix(path, pipePrefix) {
		return path
	}
	sum := sha256.Sum256([]byte(strings.ToLower(path)))
	return pipePrefix + "bm-agent-" + hex.EncodeToString(sum[:8])
}

// Listen creates the daemon's named pipe for path. Its security descriptor
// admits only the current user (full access, no inherited entries). A pipe
// already served by another daemon makes it fail with [ErrDaemonRunning].
func Listen(path string) (net.Listener, error) {
	name := PipeName(path)
	sid, err := currentUserSID()
	if err != nil {
		return nil, fmt.Errorf("ipc listen %s: %w", name, err)
	}
	ln, err := winio.ListenPipe(name, &winio.PipeConfig{
		SecurityDescriptor: "D:P(A;;GA;;;" + sid + ")",
		InputBufferSize:    64 << 10,
		OutputBufferSize:   64 << 10,
	})
	if err != nil {
		if errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, fmt.Errorf("ipc listen %s: %w", name, ErrDaemonRunning)
		}
		return nil, fmt.Errorf("ipc listen %s: %w", name, err)
	}
	return ln, nil
}

// Dial connects to the daemon's named pipe for path; a missing pipe is
// [ErrNoDaemon].
func Dial(ctx context.Context, path string) (net.Conn, error) {
	name := PipeName(path)
	c, err := winio.DialPipeContext(ctx, name)
	if err != nil {
		if errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
			return nil, fmt.Errorf("ipc dial %s: %w", name, ErrNoDaemon)
		}
		return nil, fmt.Errorf("ipc dial %s: %w", name, err)
	}
	return c, nil
}

// currentUserSID returns the SID of the user this process runs as, in its
// string form.
func currentUserSID() (string, error) {
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return "", fmt.Errorf("current user: %w", err)
	}
	return tu.User.Sid.String(), nil
}
