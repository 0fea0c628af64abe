//go:build linux

package desktoptest

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartXvfb starts an X server of w×h pixels (24-bit) on a free display,
// stopped when t ends, and returns the display's name (":N").
func StartXvfb(t testing.TB, w, h int) string {
	t.Helper()
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", fmt.Sprintf("%dx%dx24", w, h), "-nolisten", "tcp", "-wr")
	cmd.ExtraFiles = []*os.File{pw}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		pw.Close()
		t.Fatalf("start Xvfb: %v", err)
	}
	pw.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case n := <-got:
		if _, err := strconv.Atoi(n); err != nil {
			t.Fatalf("Xvfb gave display %q: %s", n, stderr.String())
		}
		return ":" + n
	case <-time.After(15 * time.Second):
		t.Fatalf("Xvfb did not start: %s", stderr.String())
	}
	return ""
}

// Grab takes a screenshot of the whole screen of $DISPLAY (xwd).
func Grab(t testing.TB) *image.NRGBA {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "xwd", "-root", "-silent").Output()
	if err != nil {
		t.Fatalf("xwd: %v", err)
	}
	img, err := DecodeXWD(out)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// GrabStable grabs until two grabs 150 ms apart agree (nothing is being
// drawn) and ok holds of the last, and returns it; it fails t after 20 s,
// saying the screen never showed what.
func GrabStable(t testing.TB, what string, ok func(*image.NRGBA) bool) *image.NRGBA {
	t.Helper()
	img, shown := GrabStableWithin(t, 20*time.Second, ok)
	if !shown {
		t.Fatalf("the screen never showed %s", what)
	}
	return img
}

// GrabStableWithin is GrabStable that waits d and says whether the
// screen showed it (false: the last grab), for a step worth retrying.
func GrabStableWithin(t testing.TB, d time.Duration, ok func(*image.NRGBA) bool) (*image.NRGBA, bool) {
	t.Helper()
	prev := Grab(t)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		time.Sleep(150 * time.Millisecond)
		img := Grab(t)
		if DiffCount(img, prev, img.Bounds()) == 0 && ok(img) {
			return img, true
		}
		prev = img
	}
	return prev, false
}

// DiffCount counts the pixels of r where a and b differ.
func DiffCount(a, b *image.NRGBA, r image.Rectangle) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if a.NRGBAAt(x, y) != b.NRGBAAt(x, y) {
				n++
			}
		}
	}
	return n
}

// DiffBounds is the smallest rectangle of r holding every pixel where a
// and b differ (empty when they agree).
func DiffBounds(a, b *image.NRGBA, r image.Rectangle) image.Rectangle {
	var out image.Rectangle
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if a.NRGBAAt(x, y) != b.NRGBAAt(x, y) {
				out = out.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	return out
}

// Crop copies r of img, scaled by an integer factor (nearest neighbour, so
// the pixels stay the screen's own).
func Crop(img *image.NRGBA, r image.Rectangle, scale int) *image.NRGBA {
	out := image.NewNRGBA(image.Rect(0, 0, r.Dx()*scale, r.Dy()*scale))
	for y := range out.Bounds().Dy() {
		for x := range out.Bounds().Dx() {
			out.SetNRGBA(x, y, img.NRGBAAt(r.Min.X+x/scale, r.Min.Y+y/scale))
		}
	}
	return out
}

// WritePNG writes img to path as a PNG.
func WritePNG(t testing.TB, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Xdotool runs xdotool with args on $DISPLAY (a pointer move, a click, a
// key), failing t if it fails.
func Xdotool(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(t.Context(), "xdotool", args...).CombinedOutput(); err != nil {
		t.Fatalf("xdotool %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
