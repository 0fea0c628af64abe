package miniotest

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/syncbuf"
)

// node is one minio process, which can be stopped and started again with
// the same address, drives and environment.
type node struct {
	bin  string
	args []string
	env  []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
	out  *syncbuf.Buffer
}

// newNode is a minio server on addr (its console on console) over
// endpoints (a data directory, or a cluster's drive URLs), with extra
// environment variables.
func newNode(bin, addr, console string, env []string, endpoints ...string) *node {
	args := append([]string{"server", "--quiet", "--address", addr, "--console-address", console}, endpoints...)
	env = append(append(os.Environ(),
		"MINIO_ROOT_USER="+RootUser, "MINIO_ROOT_PASSWORD="+RootPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1"), env...)
	closed := make(chan struct{})
	close(closed)
	return &node{bin: bin, args: args, env: env, done: closed, out: &syncbuf.Buffer{}}
}

// start starts the process (which must not be running).
func (n *node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd := exec.Command(n.bin, n.args...)
	cmd.Env = n.env
	n.out = &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = n.out, n.out
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	bindToParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start minio: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.cmd, n.done = cmd, done
	return nil
}

// running reports whether the process runs.
func (n *node) running() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// output is what the current process wrote.
func (n *node) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.out.String()
}

// stop ends the process (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (n *node) stop() { n.end(syscall.SIGTERM, 10*time.Second) }

// kill ends the process at once and waits for it.
func (n *node) kill() { n.end(syscall.SIGKILL, 0) }

func (n *node) end(sig syscall.Signal, grace time.Duration) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}
