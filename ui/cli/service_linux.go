package cli

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// daemonPID is the pid of the process serving the socket at path, from
// the socket's peer credentials (SO_PEERCRED): the daemon that answers,
// whoever started it.
func daemonPID(path string) (int, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return 0, fmt.Errorf("daemon pid: %w", err)
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("daemon pid: %w", err)
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) { cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, fmt.Errorf("daemon pid: %w", err)
	}
	if serr != nil {
		return 0, fmt.Errorf("daemon pid: %w", serr)
	}
	return int(cred.Pid), nil
}
