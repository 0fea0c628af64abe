//go:build linux && !race

package tray_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// envInPanel marks the inner run of TestTrayInPanel; envShots names the
// folder the screenshots go to (make tray-screenshots sets it to docs/).
const (
	envInPanel = "BM_TRAY_TEST_IN_PANEL"
	envShots   = "BM_TRAY_SHOTS"
)

// Geometry of the screen and of the panel (its config below).
const (
	screenW, screenH = 640, 760
	panelH           = 32
)

// panelConfig is one xfce4-panel at the top of the screen holding only the
// status tray plugin (StatusNotifierItems and legacy tray icons).
const panelConfig = `<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="length" type="uint" value="100"/>
      <property name="size" type="uint" value="32"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray">
      <property name="icon-size" type="int" value="22"/>
      <property name="square-icons" type="bool" value="true"/>
    </property>
  </property>
</channel>
`

// TestTrayInPanel runs the tray in a real desktop panel: Xvfb, a session
// bus, xfce4-panel hosting StatusNotifierItems, and a fake daemon the tray
// starts, then drives it through every state (the menu read and clicked
// over D-Bus, as in TestTrayMenuOverDBus) and takes a screenshot of the
// panel in each: the icon must be drawn (the tray area differs from the
// empty panel) and each state's image must differ from every other's. It
// also opens the menu with a click on the icon and takes a screenshot of
// it. With BM_TRAY_SHOTS set the screenshots are written there (`make
// tray-screenshots` writes docs/tray-<state>.png and docs/tray-menu.png).
// It skips when a tool is missing, and fails then when CI is set.
func TestTrayInPanel(t *testing.T) {
	if os.Getenv(envInPanel) == "1" {
		testTrayInPanel(t)
		return
	}
	if testing.Short() {
		t.Skip("short mode")
	}
	requireTools(t, "Xvfb", "xfce4-panel", "xwd", "xdotool", "dbus-run-session")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	chanDir := filepath.Join(cfg, "xfce4", "xfconf", "xfce-perchannel-xml")
	if err := os.MkdirAll(chanDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chanDir, "xfce4-panel.xml"), []byte(panelConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv(envShots)
	if shots == "" {
		shots = filepath.Join(dir, "shots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	display := startXvfb(t)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dbus-run-session", "--", self,
		"-test.run=^TestTrayInPanel$", "-test.v", "-test.count=1")
	home := filepath.Join(dir, "home")
	cmd.Env = append(os.Environ(), envInPanel+"=1", envShots+"="+shots, "DISPLAY="+display, "WAYLAND_DISPLAY=",
		"HOME="+home, "XDG_CONFIG_HOME="+cfg, "XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"), "NO_AT_BRIDGE=1", "GDK_BACKEND=x11")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tray test in xfce4-panel: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	t.Logf("screenshots in %s", shots)
}

// startXvfb starts an X server on a free display and returns its name.
func startXvfb(t *testing.T) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", fmt.Sprintf("%dx%dx24", screenW, screenH), "-nolisten", "tcp", "-wr")
	cmd.ExtraFiles = []*os.File{w}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Xvfb: %v", err)
	}
	w.Close()
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

// grab takes a screenshot of the whole screen.
func grab(t *testing.T) *image.NRGBA {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "xwd", "-root", "-silent").Output()
	if err != nil {
		t.Fatalf("xwd: %v", err)
	}
	img, err := decodeXWD(out)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// grabStable grabs until two grabs 150 ms apart agree (nothing is being
// drawn) and ok holds, or fails after a while.
func grabStable(t *testing.T, what string, ok func(*image.NRGBA) bool) *image.NRGBA {
	t.Helper()
	prev := grab(t)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		time.Sleep(150 * time.Millisecond)
		img := grab(t)
		if diffCount(img, prev, img.Bounds()) == 0 && ok(img) {
			return img
		}
		prev = img
	}
	t.Fatalf("the screen never showed %s", what)
	return nil
}

var panelRect = image.Rect(0, 0, screenW, panelH)

// diffCount counts the pixels of r where a and b differ.
func diffCount(a, b *image.NRGBA, r image.Rectangle) int {
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

// diffBounds is the smallest rectangle of r holding every pixel where a
// and b differ.
func diffBounds(a, b *image.NRGBA, r image.Rectangle) image.Rectangle {
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

// crop copies r of img, scaled by an integer factor (nearest neighbour, so
// the pixels stay the panel's own).
func crop(img *image.NRGBA, r image.Rectangle, scale int) *image.NRGBA {
	out := image.NewNRGBA(image.Rect(0, 0, r.Dx()*scale, r.Dy()*scale))
	for y := range out.Bounds().Dy() {
		for x := range out.Bounds().Dx() {
			out.SetNRGBA(x, y, img.NRGBAAt(r.Min.X+x/scale, r.Min.Y+y/scale))
		}
	}
	return out
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func xdotool(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(t.Context(), "xdotool", args...).CombinedOutput(); err != nil {
		t.Fatalf("xdotool %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// testTrayInPanel is the inner test: on its own session bus, with
// DISPLAY set to the Xvfb server.
func testTrayInPanel(t *testing.T) {
	shots := os.Getenv(envShots)
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatalf("connect session bus: %v", err)
	}
	defer conn.Close()

	var panelLog bytes.Buffer
	panel := exec.Command("xfce4-panel", "--disable-wm-check")
	panel.Stdout, panel.Stderr = &panelLog, &panelLog
	if err := panel.Start(); err != nil {
		t.Fatalf("start xfce4-panel: %v", err)
	}
	defer func() {
		_ = exec.Command("xfce4-panel", "--quit").Run()
		done := make(chan struct{})
		go func() { _ = panel.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = panel.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("xfce4-panel's output:\n%s", panelLog.String())
		}
	}()

	// The panel hosts StatusNotifierItems once it owns the watcher.
	// (a loaded CI machine starts a GTK panel slowly)
	waitForIn(t, 45*time.Second, "xfce4-panel owning org.kde.StatusNotifierWatcher", func() bool {
		var has bool
		err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.kde.StatusNotifierWatcher").Store(&has)
		return err == nil && has
	})
	emptyPanel := grabStable(t, "the empty panel", func(img *image.NRGBA) bool {
		// drawn: the panel strip is not all one colour
		c := img.NRGBAAt(0, 0)
		for x := range screenW {
			if img.NRGBAAt(x, panelH/2) != c || img.NRGBAAt(x, 0) != c {
				return true
			}
		}
		return c != (color.NRGBA{0, 0, 0, 0xff})
	})

	type shot struct {
		state string
		img   *image.NRGBA
	}
	var taken []shot
	watcher := conn.Object("org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher")
	sc := scenario{conn: conn}
	sc.register = func(t *testing.T) string {
		name := fmt.Sprintf("org.kde.StatusNotifierItem-%d-1", os.Getpid())
		waitForIn(t, 30*time.Second, "the panel listing the tray's item", func() bool {
			v, err := watcher.GetProperty("org.kde.StatusNotifierWatcher.RegisteredStatusNotifierItems")
			if err != nil {
				return false
			}
			items, _ := v.Value().([]string)
			for _, it := range items {
				if strings.HasPrefix(it, name) || strings.Contains(it, "/StatusNotifierItem") {
					return true
				}
			}
			return false
		})
		return name
	}
	sc.shot = func(t *testing.T, state string) {
		t.Helper()
		prev := emptyPanel
		if len(taken) > 0 {
			prev = taken[len(taken)-1].img
		}
		img := grabStable(t, state+"'s icon in the panel", func(img *image.NRGBA) bool {
			return diffCount(img, prev, panelRect) > 0
		})
		taken = append(taken, shot{state, img})
	}
	sc.menuShot = func(t *testing.T) {
		t.Helper()
		before := grab(t)
		icon := diffBounds(before, emptyPanel, panelRect)
		if icon.Empty() {
			t.Fatal("no icon in the panel to click")
		}
		c := image.Pt((icon.Min.X+icon.Max.X)/2, (icon.Min.Y+icon.Max.Y)/2)
		xdotool(t, "mousemove", strconv.Itoa(c.X), strconv.Itoa(c.Y), "click", "1")
		below := image.Rect(0, panelH, screenW, screenH)
		open := grabStable(t, "the open menu", func(img *image.NRGBA) bool { return diffCount(img, before, below) > 1000 })
		// Open Conflicts (the fifth item one can select), then the
		// conflict's submenu, with the keyboard as a person would.
		for _, k := range []string{"Down", "Down", "Down", "Down", "Down", "Right", "Right"} {
			xdotool(t, "key", k)
			time.Sleep(80 * time.Millisecond)
		}
		menuArea := diffCount(open, before, below)
		open = grabStable(t, "the Conflicts submenu", func(img *image.NRGBA) bool { return diffCount(img, before, below) > menuArea+500 })
		r := diffBounds(open, before, below).Union(image.Rect(0, 0, 1, panelH))
		r = r.Inset(-6).Intersect(open.Bounds())
		writePNG(t, filepath.Join(shots, "tray-menu.png"), crop(open, r, 1))
		for range 3 {
			xdotool(t, "key", "Escape")
		}
		xdotool(t, "key", "Escape")
		// the pointer leaves the icon, which the panel would show hovered
		xdotool(t, "mousemove", strconv.Itoa(screenW-1), strconv.Itoa(screenH-1))
		grabStable(t, "the menu closed", func(img *image.NRGBA) bool { return diffCount(img, before, below) == 0 })
	}
	sc.run(t)

	// Every state drew an icon, and no two look alike.
	var area image.Rectangle
	for _, s := range taken {
		d := diffBounds(s.img, emptyPanel, panelRect)
		if d.Empty() {
			t.Errorf("%s: the tray area is the empty panel's: no icon drawn", s.state)
		}
		area = area.Union(d)
	}
	for i, a := range taken {
		for _, b := range taken[i+1:] {
			if n := diffCount(a.img, b.img, panelRect); n < 10 {
				t.Errorf("%s and %s look alike in the panel (%d pixels differ)", a.state, b.state, n)
			}
		}
	}
	if shots == "" || t.Failed() {
		return
	}
	// The docs' screenshots: the tray area with some panel around it, at
	// twice the size.
	area = image.Rect(max(0, area.Min.X-48), 0, min(screenW, area.Max.X+48), panelH)
	for _, s := range taken {
		writePNG(t, filepath.Join(shots, "tray-"+s.state+".png"), crop(s.img, area, 2))
	}
}
