package browser

import (
	"errors"
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
	if err := Open("https://example.com/"); !errors.Is(err, ErrNoDisplay) {
		t.Errorf("Open without a display = %v, want ErrNoDisplay", err)
	}
}
