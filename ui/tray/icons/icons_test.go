package icons

import (
	"bytes"
	"image"
	"image/png"
	"testing"

	"github.com/basicmachines-co/bm-agent/ui/tray/icons/draw"
)

// TestFilesUpToDate checks the committed icons are what the drawing code
// paints: run `go generate ./ui/tray/icons` after changing it.
func TestFilesUpToDate(t *testing.T) {
	want, err := draw.Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range want {
		got, err := files.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v (run go generate ./ui/tray/icons)", name, err)
			continue
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s is stale: run go generate ./ui/tray/icons", name)
		}
	}
}

// TestDistinct checks every state's icon differs from every other's at
// every size, in colour and as a template, so no two states look alike.
func TestDistinct(t *testing.T) {
	tests := []struct {
		name string
		get  func(State) []byte
		size int
	}{
		{"png 22", func(s State) []byte { return PNG(s, 22) }, 22},
		{"png 24", func(s State) []byte { return PNG(s, 24) }, 24},
		{"png 32", func(s State) []byte { return PNG(s, 32) }, 32},
		{"template 16", func(s State) []byte { return Template(s, 16) }, 16},
		{"template 32", func(s State) []byte { return Template(s, 32) }, 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			imgs := map[State]image.Image{}
			for _, s := range All() {
				img, err := png.Decode(bytes.NewReader(tt.get(s)))
				if err != nil {
					t.Fatalf("%s: %v", s, err)
				}
				if img.Bounds().Dx() != tt.size || img.Bounds().Dy() != tt.size {
					t.Fatalf("%s is %v, want %d px", s, img.Bounds(), tt.size)
				}
				imgs[s] = img
			}
			for a, ia := range imgs {
				for b, ib := range imgs {
					if a < b && differing(ia, ib) < tt.size*tt.size/50 {
						t.Errorf("%s and %s differ in %d pixels only", a, b, differing(ia, ib))
					}
				}
			}
		})
	}
}

func TestICO(t *testing.T) {
	for _, s := range All() {
		b := ICO(s)
		if len(b) < 6 || b[0] != 0 || b[1] != 0 || b[2] != 1 || b[3] != 0 || int(b[4]) != len(draw.ICOSizes) {
			t.Errorf("%s.ico: bad header % x", s, b[:min(6, len(b))])
		}
	}
}

// differing counts the pixels where a and b differ by more than a little.
func differing(a, b image.Image) int {
	n := 0
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, a1 := a.At(x, y).RGBA()
			r2, g2, b2, a2 := b.At(x, y).RGBA()
			if absDiff(r1, r2)+absDiff(g1, g2)+absDiff(b1, b2)+absDiff(a1, a2) > 0x4000 {
				n++
			}
		}
	}
	return n
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}
