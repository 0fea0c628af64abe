// Package browser opens a URL in the user's web browser with the
// platform's opener (open on macOS, url.dll on Windows, xdg-open
// elsewhere), and tells whether a browser can be opened here at all
// (CanOpen): the one rule the CLI and the tray use to choose between
// opening a page and showing a code to type elsewhere.
package browser

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
)

// ErrNoBrowser is Open's error where CanOpen is false: no browser here
// could show the page.
var ErrNoBrowser = errors.New("no browser can be opened here")

// Command is the command that opens url on this platform; it is not
// started.
func Command(url string) *exec.Cmd {
	switch runtime.GOOS {
	case "darwin":
		return exec.Command("open", url)
	case "windows":
		return exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		return exec.Command("xdg-open", url)
	}
}

// Open starts the opener on url and does not wait for it. Where CanOpen
// is false it is ErrNoBrowser.
func Open(url string) error {
	if !CanOpen() {
		return ErrNoBrowser
	}
	return Command(url).Start()
}

// Env is what CanOpenIn looks at.
type Env struct {
	GOOS   string              // runtime.GOOS
	Getenv func(string) string // os.Getenv
	// LookPath finds the opener (exec.LookPath); nil: do not look.
	LookPath func(string) (string, error)
}

// CanOpen reports whether a page opened here reaches a person at a
// browser: not in an SSH session (the page would open on the other
// machine's desktop, if it has one); on macOS and Windows, yes; elsewhere
// only in a graphical session (DISPLAY or WAYLAND_DISPLAY set) with
// xdg-open on PATH.
func CanOpen() bool {
	return CanOpenIn(Env{GOOS: runtime.GOOS, Getenv: os.Getenv, LookPath: exec.LookPath})
}

// CanOpenIn is CanOpen for the platform, environment and PATH of env.
func CanOpenIn(env Env) bool {
	if env.Getenv("SSH_CONNECTION") != "" || env.Getenv("SSH_TTY") != "" {
		return false
	}
	switch env.GOOS {
	case "darwin", "windows":
		return true
	}
	if env.Getenv("DISPLAY") == "" && env.Getenv("WAYLAND_DISPLAY") == "" {
		return false
	}
	if env.LookPath != nil {
		if _, err := env.LookPath("xdg-open"); err != nil {
			return false
		}
	}
	return true
}
