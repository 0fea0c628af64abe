//go:build linux

package desktoptest

import (
	"bytes"
	"image"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// PanelHeight is the height of the panel [StartPanel] starts, in pixels.
const PanelHeight = 32

// PanelConfig is one xfce4-panel at the top of the screen, PanelHeight
// high and the screen's width, holding only the status tray plugin
// (StatusNotifierItems and legacy tray icons) with 22-pixel icons.
const PanelConfig = `<?xml version="1.0" encoding="UTF-8"?>
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

// Watcher is the StatusNotifierWatcher's bus name, which a panel hosting
// StatusNotifierItems owns.
const Watcher = "org.kde.StatusNotifierWatcher"

// Panel is a running xfce4-panel.
type Panel struct {
	conn *dbus.Conn
	// Rect is the panel's strip of the screen.
	Rect image.Rectangle
	// Empty is the screen with the panel drawn and no item in its tray.
	Empty *image.NRGBA
}

// StartPanel writes [PanelConfig] under $XDG_CONFIG_HOME, starts
// xfce4-panel on $DISPLAY, waits until it owns the StatusNotifierWatcher on
// conn's bus (the session bus) and has drawn itself, and takes the empty
// panel's screenshot. The panel quits when t ends (its output is logged if
// t failed).
func StartPanel(t testing.TB, conn *dbus.Conn) *Panel {
	t.Helper()
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" {
		t.Fatal("StartPanel: XDG_CONFIG_HOME is not set (Enter sets it)")
	}
	chanDir := filepath.Join(cfg, "xfce4", "xfconf", "xfce-perchannel-xml")
	if err := os.MkdirAll(chanDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chanDir, "xfce4-panel.xml"), []byte(PanelConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	var panelLog bytes.Buffer
	panel := exec.Command("xfce4-panel", "--disable-wm-check")
	panel.Stdout, panel.Stderr = &panelLog, &panelLog
	if err := panel.Start(); err != nil {
		t.Fatalf("start xfce4-panel: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = panel.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = exec.Command("xfce4-panel", "--quit").Run()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = panel.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("xfce4-panel's output:\n%s", panelLog.String())
		}
	})
	// The panel hosts StatusNotifierItems once it owns the watcher (a
	// loaded CI machine starts a GTK panel slowly).
	WaitFor(t, 45*time.Second, "xfce4-panel owning "+Watcher, func() bool {
		var has bool
		err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, Watcher).Store(&has)
		return err == nil && has
	})
	empty := GrabStable(t, "the empty panel", func(img *image.NRGBA) bool {
		// drawn: the panel strip is not all one colour
		c := img.NRGBAAt(0, 0)
		for x := range img.Bounds().Dx() {
			if img.NRGBAAt(x, PanelHeight/2) != c || img.NRGBAAt(x, 0) != c {
				return true
			}
		}
		return c != (color.NRGBA{0, 0, 0, 0xff})
	})
	return &Panel{conn: conn, Rect: image.Rect(0, 0, empty.Bounds().Dx(), PanelHeight), Empty: empty}
}

// WaitItem waits (up to d) until the panel lists the StatusNotifierItem
// of the bus name name (org.kde.StatusNotifierItem-PID-N, as
// fyne.io/systray names it) among its registered items.
func (p *Panel) WaitItem(t testing.TB, name string, d time.Duration) {
	t.Helper()
	watcher := p.conn.Object(Watcher, "/StatusNotifierWatcher")
	WaitFor(t, d, "the panel listing the item "+name, func() bool {
		var owner string
		if err := p.conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, name).Store(&owner); err != nil {
			return false
		}
		v, err := watcher.GetProperty(Watcher + ".RegisteredStatusNotifierItems")
		if err != nil {
			return false
		}
		items, _ := v.Value().([]string)
		for _, it := range items {
			// an item is listed by its bus name or unique name, with its path
			if it == name || it == owner || strings.HasPrefix(it, name+"/") || strings.HasPrefix(it, owner+"/") {
				return true
			}
		}
		return false
	})
}

// Shot waits until the panel's strip differs from prev's (an icon drawn or
// changed) and nothing is being drawn, and returns the screenshot.
func (p *Panel) Shot(t testing.TB, what string, prev *image.NRGBA) *image.NRGBA {
	t.Helper()
	return GrabStable(t, what+" in the panel", func(img *image.NRGBA) bool {
		return DiffCount(img, prev, p.Rect) > 0
	})
}

// Icons is the part of the panel's strip where img differs from the empty
// panel: the items drawn in its tray (empty when there is none).
func (p *Panel) Icons(img *image.NRGBA) image.Rectangle {
	return DiffBounds(img, p.Empty, p.Rect)
}
