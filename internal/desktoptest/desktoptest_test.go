//go:build linux

package desktoptest

import (
	"encoding/binary"
	"image"
	"image/color"
	"testing"

	"github.com/godbus/dbus/v5"
)

// xwdDump is a 2×1 ZPixmap dump as xwd writes it: 32 bits per pixel,
// LSBFirst, masks 0xff0000/0xff00/0xff, no colormap entries.
func xwdDump(px ...uint32) []byte {
	const header = 100
	h := make([]uint32, 25)
	h[0], h[1], h[2], h[4], h[5] = header, 7, 2, uint32(len(px)), 1
	h[7], h[11], h[12] = 0, 32, uint32(4*len(px))
	h[14], h[15], h[16], h[19] = 0xff0000, 0xff00, 0xff, 0
	b := make([]byte, header+4*len(px))
	for i, v := range h {
		binary.BigEndian.PutUint32(b[4*i:], v)
	}
	for i, p := range px {
		binary.LittleEndian.PutUint32(b[header+4*i:], p)
	}
	return b
}

func TestDecodeXWD(t *testing.T) {
	img, err := DecodeXWD(xwdDump(0x102030, 0xff00ff))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds() != image.Rect(0, 0, 2, 1) {
		t.Fatalf("bounds %v", img.Bounds())
	}
	if got, want := img.NRGBAAt(0, 0), (color.NRGBA{0x10, 0x20, 0x30, 0xff}); got != want {
		t.Errorf("pixel 0 = %v, want %v", got, want)
	}
	if got, want := img.NRGBAAt(1, 0), (color.NRGBA{0xff, 0, 0xff, 0xff}); got != want {
		t.Errorf("pixel 1 = %v, want %v", got, want)
	}
	if _, err := DecodeXWD(xwdDump(1)[:50]); err == nil {
		t.Error("a short dump decoded")
	}
	if DiffCount(img, img, img.Bounds()) != 0 || !DiffBounds(img, img, img.Bounds()).Empty() {
		t.Error("an image differs from itself")
	}
	other := image.NewNRGBA(img.Bounds())
	copy(other.Pix, img.Pix)
	other.SetNRGBA(1, 0, color.NRGBA{A: 0xff})
	if n, r := DiffCount(img, other, img.Bounds()), DiffBounds(img, other, img.Bounds()); n != 1 || r != image.Rect(1, 0, 2, 1) {
		t.Errorf("one pixel changed: DiffCount %d, DiffBounds %v", n, r)
	}
	if c := Crop(img, image.Rect(1, 0, 2, 1), 2); c.Bounds().Dx() != 2 || c.NRGBAAt(1, 1) != img.NRGBAAt(1, 0) {
		t.Errorf("Crop ×2 of pixel 1: %v", c.Pix)
	}
}

// node is a (ia{sv}av) layout node, as GetLayout answers.
func node(id int32, props map[string]any, children ...[]any) []any {
	p := map[string]dbus.Variant{}
	for k, v := range props {
		p[k] = dbus.MakeVariant(v)
	}
	ch := []dbus.Variant{}
	for _, c := range children {
		ch = append(ch, dbus.MakeVariant(c))
	}
	return []any{id, p, ch}
}

func TestMenuLayout(t *testing.T) {
	root := node(0, nil,
		node(1, map[string]any{"label": "Up to date", "enabled": false}),
		node(2, map[string]any{"label": "Conflicts (1)"},
			node(3, map[string]any{"label": "a.md (from laptop, 09:40)"},
				node(4, map[string]any{"label": "Keep mine"}))),
		node(5, map[string]any{"label": "Recently deleted", "visible": false},
			node(6, map[string]any{"label": "Restore b.md (deleted 09:40)"})),
		node(7, map[string]any{"type": "separator"}))
	var m Menu
	if err := flatten(root, &m, -1, true); err != nil {
		t.Fatal(err)
	}
	if len(m) != 7 {
		t.Fatalf("flattened %d items, want 7:%v", len(m), m)
	}
	if it, ok := m.Find("Keep mine"); !ok || it.ID != 4 || it.Depth != 2 || !it.Enabled {
		t.Errorf("Find(Keep mine) = %v, %v", it, ok)
	}
	if it, ok := m.Find("Up to date"); !ok || it.Enabled {
		t.Errorf("Find(Up to date) = %v, %v: want it shown, disabled", it, ok)
	}
	for label, want := range map[string]bool{
		"a.md (from*":      true,
		"*09:40)":          true,
		"Restore b.md*":    false, // under a hidden submenu
		"Recently deleted": false,
		"Conflicts":        false, // not a prefix pattern
	} {
		if got := m.Shown(label); got != want {
			t.Errorf("Shown(%q) = %v, want %v", label, got, want)
		}
	}
	if m[6].Type != "separator" {
		t.Errorf("item 7 type %q", m[6].Type)
	}
	if err := flatten([]any{int32(0)}, &m, -1, true); err == nil {
		t.Error("a node of one field flattened")
	}
}
