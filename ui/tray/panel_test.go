//go:build linux && !race

package tray_test

import (
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/basicmachines-co/bm-agent/internal/desktoptest"
)

// Geometry of the screen (the panel is its width, desktoptest.PanelHeight
// high, at the top).
const screenW, screenH = 640, 760

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
	if !desktoptest.Enter(t, desktoptest.Session{Display: true, Width: screenW, Height: screenH,
		Tools: []string{"xfce4-panel", "xwd", "xdotool"}}) {
		return
	}
	shots := desktoptest.ShotsDir(t)
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatalf("connect session bus: %v", err)
	}
	defer conn.Close()
	panel := desktoptest.StartPanel(t, conn)

	type shot struct {
		state string
		img   *image.NRGBA
	}
	var taken []shot
	sc := scenario{conn: conn}
	sc.register = func(t *testing.T) string {
		name := fmt.Sprintf("org.kde.StatusNotifierItem-%d-1", os.Getpid())
		panel.WaitItem(t, name, 30*time.Second)
		return name
	}
	sc.shot = func(t *testing.T, state string) {
		t.Helper()
		prev := panel.Empty
		if len(taken) > 0 {
			prev = taken[len(taken)-1].img
		}
		taken = append(taken, shot{state, panel.Shot(t, state+"'s icon", prev)})
	}
	sc.menuShot = func(t *testing.T) {
		t.Helper()
		before := desktoptest.Grab(t)
		icon := panel.Icons(before)
		if icon.Empty() {
			t.Fatal("no icon in the panel to click")
		}
		c := image.Pt((icon.Min.X+icon.Max.X)/2, (icon.Min.Y+icon.Max.Y)/2)
		below := image.Rect(0, desktoptest.PanelHeight, screenW, screenH)
		// Keys sent while a loaded machine is still mapping the menu or
		// its submenu can be lost: then the menu is closed and opened
		// again (a person would see it and do the same).
		var open *image.NRGBA
		for attempt := 1; ; attempt++ {
			desktoptest.Xdotool(t, "mousemove", strconv.Itoa(c.X), strconv.Itoa(c.Y), "click", "1")
			open = desktoptest.GrabStable(t, "the open menu", func(img *image.NRGBA) bool {
				return desktoptest.DiffCount(img, before, below) > 1000
			})
			// Open Conflicts (the fifth item one can select) with the
			// keyboard, as a person would: its submenu holds the
			// conflict's line and its actions (two menu levels: a third
			// one is drawn empty by xfce4-panel's libdbusmenu-gtk), with
			// Keep mine selected.
			for range 5 {
				desktoptest.Xdotool(t, "key", "Down")
				time.Sleep(80 * time.Millisecond)
			}
			menuArea := desktoptest.DiffCount(open, before, below)
			desktoptest.Xdotool(t, "key", "Right")
			// the line and four actions: five rows of at least ~20 px
			var shown bool
			open, shown = desktoptest.GrabStableWithin(t, 10*time.Second, func(img *image.NRGBA) bool {
				return desktoptest.DiffCount(img, before, below) > menuArea+5*20*100
			})
			if shown {
				break
			}
			if attempt == 3 {
				t.Fatalf("the screen never showed the Conflicts submenu with its actions (%d tries)", attempt)
			}
			t.Logf("try %d: the Conflicts submenu did not open; closing the menu and trying again", attempt)
			for range 4 {
				desktoptest.Xdotool(t, "key", "Escape")
			}
			desktoptest.GrabStable(t, "the menu closed", func(img *image.NRGBA) bool {
				return desktoptest.DiffCount(img, before, below) == 0
			})
		}
		r := desktoptest.DiffBounds(open, before, below).Union(image.Rect(0, 0, 1, desktoptest.PanelHeight))
		r = r.Inset(-6).Intersect(open.Bounds())
		desktoptest.WritePNG(t, filepath.Join(shots, "tray-menu.png"), desktoptest.Crop(open, r, 1))
		for range 4 {
			desktoptest.Xdotool(t, "key", "Escape")
		}
		// the pointer leaves the icon, which the panel would show hovered
		desktoptest.Xdotool(t, "mousemove", strconv.Itoa(screenW-1), strconv.Itoa(screenH-1))
		desktoptest.GrabStable(t, "the menu closed", func(img *image.NRGBA) bool {
			return desktoptest.DiffCount(img, before, below) == 0
		})
	}
	sc.run(t)

	// Every state drew an icon, and no two look alike.
	var area image.Rectangle
	for _, s := range taken {
		d := panel.Icons(s.img)
		if d.Empty() {
			t.Errorf("%s: the tray area is the empty panel's: no icon drawn", s.state)
		}
		area = area.Union(d)
	}
	for i, a := range taken {
		for _, b := range taken[i+1:] {
			if n := desktoptest.DiffCount(a.img, b.img, panel.Rect); n < 10 {
				t.Errorf("%s and %s look alike in the panel (%d pixels differ)", a.state, b.state, n)
			}
		}
	}
	if t.Failed() {
		return
	}
	// The docs' screenshots: the tray area with some panel around it, at
	// twice the size.
	area = image.Rect(max(0, area.Min.X-48), 0, min(screenW, area.Max.X+48), desktoptest.PanelHeight)
	for _, s := range taken {
		desktoptest.WritePNG(t, filepath.Join(shots, "tray-"+s.state+".png"), desktoptest.Crop(s.img, area, 2))
	}
	t.Logf("screenshots in %s", shots)
}
