// Package browser opens a URL in the user's web browser with the
// platform's opener: open on macOS, url.dll on Windows, xdg-open elsewhere.
package browser

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
)

// ErrNoDisplay is Open's error on a platform with xdg-open when neither
// DISPLAY nor WAYLAND_DISPLAY is set: no browser could show the page.
var ErrNoDisplay = errors.New("no display")

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

// Open starts the opener on url and does not wait for it. Where the opener
// is xdg-open and there is no display it is ErrNoDisplay.
func Open(url string) error {
	if runtime.GOOS != "darwin" && runtime.GOOS != "windows" &&
		os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return ErrNoDisplay
	}
	return Command(url).Start()
}
