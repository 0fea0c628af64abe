//go:build linux && !race

package tray_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/basicmachines-co/bm-agent/internal/desktoptest"
)

// TestTrayMenuOverDBus drives the real tray (fyne.io/systray) the way a
// desktop panel does, with no display: it owns org.kde.StatusNotifierWatcher
// on a private session bus, waits for the tray to register its
// StatusNotifierItem, reads the menu with com.canonical.dbusmenu.GetLayout
// and clicks items with Event, against a fake daemon on a unix socket that
// starts when the tray's "Start bm-agent" is clicked and restarts later.
// The test re-runs itself in a session of its own (desktoptest.Enter,
// under dbus-run-session); it skips when that tool is not installed (and
// fails when CI is set).
func TestTrayMenuOverDBus(t *testing.T) {
	// No display: the tray must not need one, it is pure D-Bus.
	if desktoptest.Enter(t, desktoptest.Session{Timeout: 90 * time.Second}) {
		testTrayMenu(t)
	}
}

// watcher is a minimal org.kde.StatusNotifierWatcher, as a desktop panel
// implements it: it hands over each registration.
type watcher struct{ reg chan registration }

type registration struct{ sender, service string }

// RegisterStatusNotifierItem is the watcher's D-Bus method.
func (w *watcher) RegisterStatusNotifierItem(sender dbus.Sender, service string) *dbus.Error {
	select {
	case w.reg <- registration{string(sender), service}:
	default:
	}
	return nil
}

// testTrayMenu is the inner test, on a private session bus.
func testTrayMenu(t *testing.T) {
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		t.Fatal("no DBUS_SESSION_BUS_ADDRESS under dbus-run-session")
	}
	// The panel: a private connection owning the watcher name before the
	// tray starts.
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatalf("connect session bus: %v", err)
	}
	defer conn.Close()
	w := &watcher{reg: make(chan registration, 4)}
	if err := conn.Export(w, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher"); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName("org.kde.StatusNotifierWatcher", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.kde.StatusNotifierWatcher: reply %v, err %v", reply, err)
	}
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(desktoptest.DBusMenu), dbus.WithMatchMember("LayoutUpdated")); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *dbus.Signal, 1024)
	conn.Signal(signals)

	var reg registration
	sc := scenario{conn: conn, register: func(t *testing.T) string {
		select {
		case reg = <-w.reg:
		case <-time.After(10 * time.Second):
			t.Fatal("the tray never called RegisterStatusNotifierItem")
		}
		if reg.service != "/StatusNotifierItem" {
			t.Errorf("registered service %q, want the object path /StatusNotifierItem", reg.service)
		}
		name := fmt.Sprintf("org.kde.StatusNotifierItem-%d-1", os.Getpid())
		var owner string
		if err := conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, name).Store(&owner); err != nil {
			t.Fatalf("GetNameOwner(%s): %v", name, err)
		}
		if owner != reg.sender {
			t.Errorf("%s is owned by %s, but the registration came from %s", name, owner, reg.sender)
		}
		return name
	}}
	sc.shot = func(t *testing.T, state string) {
		// Each state's menu change reaches a panel as LayoutUpdated.
		if n := countLayoutUpdated(signals, reg.sender); n == 0 && state != "not-running" {
			t.Errorf("%s: no LayoutUpdated signal from the tray's menu: a panel would not redraw", state)
		}
	}
	sc.run(t)
}

// countLayoutUpdated counts (and drains) the LayoutUpdated signals queued
// on ch that came from sender (a unique name).
func countLayoutUpdated(ch <-chan *dbus.Signal, sender string) int {
	n := 0
	for {
		select {
		case s := <-ch:
			if s != nil && s.Sender == sender && s.Name == desktoptest.DBusMenu+".LayoutUpdated" {
				n++
			}
		default:
			return n
		}
	}
}
