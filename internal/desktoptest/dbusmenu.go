//go:build linux

package desktoptest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// DBusMenu is the interface of a tray's menu (libdbusmenu's protocol).
const DBusMenu = "com.canonical.dbusmenu"

// StatusNotifierItem is the interface of a tray item.
const StatusNotifierItem = "org.kde.StatusNotifierItem"

// MenuItem is one entry of a dbusmenu layout.
type MenuItem struct {
	ID      int32
	Label   string
	Type    string // "" or "separator"
	Visible bool   // and so is every submenu it is in
	Enabled bool
	Depth   int // 0 for the top level
}

func (m MenuItem) String() string {
	return fmt.Sprintf("%s%d %q visible=%v enabled=%v", strings.Repeat("  ", m.Depth), m.ID, m.Label, m.Visible, m.Enabled)
}

// Menu is a flattened layout, depth first. An item under a hidden one is
// not Visible.
type Menu []MenuItem

// Find returns the visible item whose label is label, or starts with it
// when label ends in "*", or ends with it when label starts with "*".
func (m Menu) Find(label string) (MenuItem, bool) {
	prefix, isPrefix := strings.CutSuffix(label, "*")
	suffix, isSuffix := strings.CutPrefix(label, "*")
	for _, it := range m {
		if it.Visible && (it.Label == label || isPrefix && strings.HasPrefix(it.Label, prefix) ||
			isSuffix && strings.HasSuffix(it.Label, suffix)) {
			return it, true
		}
	}
	return MenuItem{}, false
}

// Shown reports whether label (see [Menu.Find]) is a visible item.
func (m Menu) Shown(label string) bool {
	_, ok := m.Find(label)
	return ok
}

func (m Menu) String() string {
	var b strings.Builder
	for _, it := range m {
		if it.Visible {
			b.WriteString("\n  " + it.String())
		}
	}
	return b.String()
}

// MenuClient is a panel's side of a tray: its StatusNotifierItem and the
// menu that item names, on one bus connection.
type MenuClient struct {
	Item, Menu dbus.BusObject
	// Timeout bounds the waits (default 10 s).
	Timeout time.Duration
}

// NewMenuClient reads the Menu property of the StatusNotifierItem that
// name (a bus name) serves at /StatusNotifierItem, and returns a client of
// both; it fails t if the item names no menu.
func NewMenuClient(t testing.TB, conn *dbus.Conn, name string) *MenuClient {
	t.Helper()
	item := conn.Object(name, "/StatusNotifierItem")
	v, err := item.GetProperty(StatusNotifierItem + ".Menu")
	if err != nil {
		t.Fatalf("%s.Menu: %v", StatusNotifierItem, err)
	}
	path, ok := v.Value().(dbus.ObjectPath)
	if !ok || !path.IsValid() {
		t.Fatalf("%s.Menu = %v, want an object path", StatusNotifierItem, v)
	}
	return &MenuClient{Item: item, Menu: conn.Object(name, path)}
}

// Layout calls GetLayout on the root and flattens the answer.
func (c *MenuClient) Layout(ctx context.Context) (Menu, error) {
	var (
		rev  uint32
		root []any // (ia{sv}av)
	)
	call := c.Menu.CallWithContext(ctx, DBusMenu+".GetLayout", 0, int32(0), int32(-1), []string{})
	if err := call.Store(&rev, &root); err != nil {
		return nil, fmt.Errorf("GetLayout: %w", err)
	}
	var out Menu
	if err := flatten(root, &out, -1, true); err != nil {
		return nil, fmt.Errorf("GetLayout: %w", err)
	}
	return out, nil
}

// flatten appends the items of a (ia{sv}av) layout node, depth first; the
// root (depth -1) is not an item, and nothing under a hidden item is
// visible.
func flatten(node []any, out *Menu, depth int, visible bool) error {
	if len(node) != 3 {
		return fmt.Errorf("layout node has %d fields, want 3", len(node))
	}
	id, ok1 := node[0].(int32)
	props, ok2 := node[1].(map[string]dbus.Variant)
	children, ok3 := node[2].([]dbus.Variant)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("layout node types %T %T %T", node[0], node[1], node[2])
	}
	if depth >= 0 {
		it := MenuItem{ID: id, Visible: true, Enabled: true, Depth: depth}
		if v, ok := props["label"].Value().(string); ok {
			it.Label = v
		}
		if v, ok := props["type"].Value().(string); ok {
			it.Type = v
		}
		if v, ok := props["visible"].Value().(bool); ok {
			it.Visible = v
		}
		if v, ok := props["enabled"].Value().(bool); ok {
			it.Enabled = v
		}
		it.Visible = it.Visible && visible
		visible = it.Visible
		*out = append(*out, it)
	}
	for _, ch := range children {
		sub, ok := ch.Value().([]any)
		if !ok {
			return fmt.Errorf("layout child is %T", ch.Value())
		}
		if err := flatten(sub, out, depth+1, visible); err != nil {
			return err
		}
	}
	return nil
}

func (c *MenuClient) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 10 * time.Second
}

// WaitMenu polls the layout until ok holds of it and returns it, failing
// t after a while with the last layout seen.
func (c *MenuClient) WaitMenu(t testing.TB, what string, ok func(Menu) bool) Menu {
	t.Helper()
	var (
		m   Menu
		err error
	)
	for deadline := time.Now().Add(c.timeout()); time.Now().Before(deadline); {
		m, err = c.Layout(t.Context())
		if err == nil && ok(m) {
			return m
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("menu never showed %s within %s (last error %v); last layout:%v", what, c.timeout(), err, m)
	return nil
}

// WaitShown waits until every label is a visible item.
func (c *MenuClient) WaitShown(t testing.TB, labels ...string) Menu {
	t.Helper()
	return c.WaitState(t, labels, nil)
}

// WaitState waits until every label of shown is a visible item and none
// of hidden is: a tray updates its items one at a time, so a layout read
// in between shows some of the new state only.
func (c *MenuClient) WaitState(t testing.TB, shown, hidden []string) Menu {
	t.Helper()
	return c.WaitMenu(t, fmt.Sprintf("%q and not %q", shown, hidden), func(m Menu) bool {
		for _, l := range shown {
			if !m.Shown(l) {
				return false
			}
		}
		for _, l := range hidden {
			if m.Shown(l) {
				return false
			}
		}
		return true
	})
}

// Click sends one "clicked" event for label (see [Menu.Find]), as a panel
// does; it fails t unless label is a visible, enabled item.
func (c *MenuClient) Click(t testing.TB, label string) {
	t.Helper()
	m, err := c.Layout(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	it, ok := m.Find(label)
	if !ok || !it.Enabled {
		t.Fatalf("no visible, enabled %q item to click; layout:%v", label, m)
	}
	err = c.Menu.CallWithContext(t.Context(), DBusMenu+".Event", 0,
		it.ID, "clicked", dbus.MakeVariant(""), uint32(time.Now().Unix())).Err
	if err != nil {
		t.Fatalf("Event(%q clicked): %v", label, err)
	}
}
