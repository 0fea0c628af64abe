package ipc

import (
	"os"
	"path/filepath"
)

// SocketName is the file name of the daemon's socket.
const SocketName = "bm-agent.sock"

// maxSocketPath is the longest unix socket path every platform accepts
// (sun_path is 104 bytes on darwin and BSD, 108 on linux, NUL included).
const maxSocketPath = 103

// DefaultSocketPath returns where the daemon listens:
// $BM_AGENT_HOME/bm-agent.sock if BM_AGENT_HOME is set, else
// $XDG_RUNTIME_DIR/bm-agent/bm-agent.sock, else
// <os.UserConfigDir>/bm-agent/bm-agent.sock (falling back to the temp dir
// when there is no config dir). [Listen] refuses paths longer than a unix
// socket allows; BM_AGENT_HOME is the way out.
func DefaultSocketPath() string {
	if home := os.Getenv("BM_AGENT_HOME"); home != "" {
		return filepath.Join(home, SocketName)
	}
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		return filepath.Join(rt, "bm-agent", SocketName)
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "bm-agent", SocketName)
}
