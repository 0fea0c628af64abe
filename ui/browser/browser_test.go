package browser

import (
	"errors"
	"os/exec"
	"runtime"
	"slices"
	"testing"
)

func TestCommand(t *testing.T) {
	const u = "https://example.com/device?code=AB"
	cmd := Command(u)
	want := map[string][]string{
		"darwin":  {"open", u},
		"windows": {"rundll32", "url.dll,FileProtocolHandler", u},
	}[runtime.GOOS]
	if want == nil {
		want = []string{"xdg-open", u}
	}
	if !slices.Equal(cmd.Args, want) {
		t.Errorf("Command(%q).Args = %q, want %q", u, cmd.Args, want)
	}
}

func TestOpenNoDisplay(t *testing.T) {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		t.Skip("the display check is for xdg-open platforms")
	}
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	if err := Open("https://example.com/"); !errors.Is(err, ErrNoBrowser) {
		t.Errorf("Open without a display = %v, want ErrNoBrowser", err)
	}
}

func TestCanOpenIn(t *testing.T) {
	found := func(string) (string, error) { return "/usr/bin/xdg-open", nil }
	missing := func(string) (string, error) { return "", exec.ErrNotFound }
	ssh := map[string]string{"SSH_CONNECTION": "10.0.0.1 22 10.0.0.2 22"}
	tests := []struct {
		name     string
		goos     string
		env      map[string]string
		lookPath func(string) (string, error)
		want     bool
	}{
		{"X11", "linux", map[string]string{"DISPLAY": ":0"}, found, true},
		{"Wayland", "linux", map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, found, true},
		{"no display", "linux", nil, found, false},
		{"no display, BSD", "freebsd", nil, found, false},
		{"no xdg-open", "linux", map[string]string{"DISPLAY": ":0"}, missing, false},
		{"PATH not looked at", "linux", map[string]string{"DISPLAY": ":0"}, nil, true},
		{"SSH with a display", "linux", map[string]string{"DISPLAY": ":0", "SSH_CONNECTION": "10.0.0.1 22 10.0.0.2 22"}, found, false},
		{"macOS", "darwin", nil, missing, true},
		{"macOS over SSH", "darwin", map[string]string{"SSH_TTY": "/dev/ttys001"}, found, false},
		{"Windows", "windows", nil, missing, true},
		{"Windows over SSH", "windows", ssh, missing, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := Env{GOOS: tt.goos, Getenv: func(k string) string { return tt.env[k] }, LookPath: tt.lookPath}
			if got := CanOpenIn(env); got != tt.want {
				t.Errorf("CanOpenIn(%s, %v) = %v, want %v", tt.goos, tt.env, got, tt.want)
			}
		})
	}
}
