// Package draw paints bm-tray's icons: a note with a badge that names the
// state, at any size, in colour or as a macOS template image (black and
// alpha only). The generator in ../gen writes its output as the committed
// PNG and ICO files; a test checks they are up to date.
package draw

import (
	"image"
	"image/color"
	"math"
)

// States, one icon each; the names are the files' names.
const (
	UpToDate   = "up-to-date"
	Syncing    = "syncing"
	Paused     = "paused"
	Attention  = "attention"
	Offline    = "offline"
	LoggedOut  = "logged-out"
	NotRunning = "not-running"
)

// States lists every state, in the order the docs show them.
var States = []string{UpToDate, Syncing, Paused, Attention, Offline, LoggedOut, NotRunning}

// Sizes are the PNG sizes written for the panels (22 and 24 px on Linux
// panels, 32 px for HiDPI and the menu bar's @2x).
var Sizes = []int{22, 24, 32}

// TemplateSizes are the macOS template images' sizes: the menu bar shows
// the tray's icon at 16 pt, so 16 px and 32 px (@2x).
var TemplateSizes = []int{16, 32}

// ICOSizes are the sizes of the Windows ICO's images.
var ICOSizes = []int{16, 24, 32, 48}

// Colours of the glyphs.
var (
	ink    = color.NRGBA{0x26, 0x32, 0x38, 0xff} // the note's outline and lines
	paper  = color.NRGBA{0xff, 0xff, 0xff, 0xff}
	green  = color.NRGBA{0x2e, 0x7d, 0x32, 0xff}
	blue   = color.NRGBA{0x15, 0x65, 0xc0, 0xff}
	grey   = color.NRGBA{0x75, 0x75, 0x75, 0xff}
	orange = color.NRGBA{0xef, 0x6c, 0x00, 0xff}
	slate  = color.NRGBA{0x54, 0x6e, 0x7a, 0xff}
	red    = color.NRGBA{0xd3, 0x2f, 0x2f, 0xff}
	purple = color.NRGBA{0x6a, 0x1b, 0x9a, 0xff}
	dim    = color.NRGBA{0x9e, 0x9e, 0x9e, 0xff}
)

// supersample is how many samples per pixel side the coverage is taken at.
const supersample = 6

// canvas paints shapes in a 32×32 unit space onto an image of any size,
// anti-aliased by supersampling. In template mode every colour paints
// black and paper erases (a cut-out), as macOS template images want.
type canvas struct {
	size     int
	template bool
	img      *image.NRGBA
}

func newCanvas(size int, template bool) *canvas {
	return &canvas{size: size, template: template, img: image.NewNRGBA(image.Rect(0, 0, size, size))}
}

// fill paints c where inside (in units) holds, weighted by coverage.
func (cv *canvas) fill(c color.NRGBA, inside func(x, y float64) bool) {
	scale := 32.0 / float64(cv.size)
	for py := 0; py < cv.size; py++ {
		for px := 0; px < cv.size; px++ {
			n := 0
			for sy := 0; sy < supersample; sy++ {
				for sx := 0; sx < supersample; sx++ {
					x := (float64(px) + (float64(sx)+0.5)/supersample) * scale
					y := (float64(py) + (float64(sy)+0.5)/supersample) * scale
					if inside(x, y) {
						n++
					}
				}
			}
			if n == 0 {
				continue
			}
			cov := float64(n) / (supersample * supersample)
			cv.blend(px, py, c, cov)
		}
	}
}

// blend composites c with coverage cov over the pixel (source over).
func (cv *canvas) blend(px, py int, c color.NRGBA, cov float64) {
	dst := cv.img.NRGBAAt(px, py)
	if cv.template {
		if c == paper { // erase
			a := float64(dst.A) * (1 - cov)
			cv.img.SetNRGBA(px, py, color.NRGBA{0, 0, 0, uint8(math.Round(a))})
			return
		}
		c = color.NRGBA{0, 0, 0, c.A}
	}
	sa := float64(c.A) / 255 * cov
	da := float64(dst.A) / 255
	oa := sa + da*(1-sa)
	if oa == 0 {
		return
	}
	mix := func(s, d uint8) uint8 {
		v := (float64(s)*sa + float64(d)*da*(1-sa)) / oa
		return uint8(math.Round(v))
	}
	cv.img.SetNRGBA(px, py, color.NRGBA{mix(c.R, dst.R), mix(c.G, dst.G), mix(c.B, dst.B), uint8(math.Round(oa * 255))})
}

// Shapes, in units.

func circle(cx, cy, r float64) func(x, y float64) bool {
	return func(x, y float64) bool { return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r }
}

func roundRect(x0, y0, x1, y1, r float64) func(x, y float64) bool {
	return func(x, y float64) bool {
		if x < x0 || x > x1 || y < y0 || y > y1 {
			return false
		}
		cx := math.Max(x0+r, math.Min(x, x1-r))
		cy := math.Max(y0+r, math.Min(y, y1-r))
		return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r
	}
}

// segment is a stroke of width w from (ax, ay) to (bx, by), round caps.
func segment(ax, ay, bx, by, w float64) func(x, y float64) bool {
	return func(x, y float64) bool {
		dx, dy := bx-ax, by-ay
		t := ((x-ax)*dx + (y-ay)*dy) / (dx*dx + dy*dy)
		t = math.Max(0, math.Min(1, t))
		ex, ey := x-(ax+t*dx), y-(ay+t*dy)
		return ex*ex+ey*ey <= w*w/4
	}
}

// polygon is the inside of a convex or concave polygon (even-odd rule).
func polygon(pts ...[2]float64) func(x, y float64) bool {
	return func(x, y float64) bool {
		in := false
		for i, j := 0, len(pts)-1; i < len(pts); j, i = i, i+1 {
			xi, yi, xj, yj := pts[i][0], pts[i][1], pts[j][0], pts[j][1]
			if (yi > y) != (yj > y) && x < (xj-xi)*(y-yi)/(yj-yi)+xi {
				in = !in
			}
		}
		return in
	}
}

func union(fs ...func(x, y float64) bool) func(x, y float64) bool {
	return func(x, y float64) bool {
		for _, f := range fs {
			if f(x, y) {
				return true
			}
		}
		return false
	}
}

func minus(a, b func(x, y float64) bool) func(x, y float64) bool {
	return func(x, y float64) bool { return a(x, y) && !b(x, y) }
}

// The note: a page with a folded corner and three lines of text, on the
// left of the icon; the badge sits on its lower right.
var (
	pageOuter = polygon([2]float64{3, 1.5}, [2]float64{17, 1.5}, [2]float64{24, 8.5}, [2]float64{24, 30.5}, [2]float64{3, 30.5})
	pageInner = polygon([2]float64{5.3, 3.8}, [2]float64{16, 3.8}, [2]float64{21.7, 9.5}, [2]float64{21.7, 28.2}, [2]float64{5.3, 28.2})
	pageMid   = polygon([2]float64{4.1, 2.6}, [2]float64{16.5, 2.6}, [2]float64{22.9, 9}, [2]float64{22.9, 29.4}, [2]float64{4.1, 29.4})
	fold      = polygon([2]float64{16, 2}, [2]float64{16, 9.5}, [2]float64{23.5, 9.5})
	textLines = union(segment(8, 12.5, 18.5, 12.5, 2), segment(8, 17, 18.5, 17, 2), segment(8, 21.5, 14, 21.5, 2))
)

// badge centre and radius, and the paper ring that sets it off the note.
const bx, by, br = 22.5, 22.5, 8.5

func (cv *canvas) note(outline, lines color.NRGBA, hollow bool) {
	if hollow {
		// outline only, with a paper core line so it shows on dark
		// panels as well as light ones
		cv.fill(outline, minus(pageOuter, pageInner))
		cv.fill(outline, fold)
		cv.fill(paper, minus(pageMid, pageInner))
		return
	}
	cv.fill(outline, pageOuter)
	cv.fill(paper, pageInner)
	cv.fill(outline, fold)
	cv.fill(lines, textLines)
}

// halo is the colour of the ring that sets a badge off the note: dark in
// colour (a light ring would meet the transparent background, and
// fyne.io/systray sends Linux panels premultiplied pixels as if they were
// not, which turns light half-transparent edges into a grey fringe), a
// cut-out in a template.
func (cv *canvas) halo() color.NRGBA {
	if cv.template {
		return paper
	}
	return ink
}

func (cv *canvas) badgeDisc(c color.NRGBA) {
	cv.fill(cv.halo(), circle(bx, by, br+1.5))
	cv.fill(c, circle(bx, by, br))
}

// Render paints state's icon at size px; template paints the macOS
// template image (black and alpha only).
func Render(state string, size int, template bool) *image.NRGBA {
	cv := newCanvas(size, template)
	switch state {
	case UpToDate:
		cv.note(ink, ink, false)
		cv.badgeDisc(green)
		cv.fill(paper, union(segment(18.3, 22.8, 21.3, 25.8, 2.6), segment(21.3, 25.8, 26.8, 19.3, 2.6)))
	case Syncing:
		cv.note(ink, ink, false)
		cv.badgeDisc(blue)
		// an up arrow and a down arrow, side by side
		cv.fill(paper, union(
			segment(19.5, 19.5, 19.5, 27, 2.2), polygon([2]float64{16.4, 21.2}, [2]float64{19.5, 16.8}, [2]float64{22.6, 21.2}),
			segment(25.5, 18, 25.5, 25.5, 2.2), polygon([2]float64{22.4, 23.8}, [2]float64{25.5, 28.2}, [2]float64{28.6, 23.8}),
		))
	case Paused:
		cv.note(ink, ink, false)
		cv.badgeDisc(grey)
		cv.fill(paper, union(roundRect(18.6, 18, 21.3, 27, 0.6), roundRect(23.7, 18, 26.4, 27, 0.6)))
	case Attention:
		cv.note(ink, ink, false)
		// a warning triangle, not a disc: the shape alone says "look"
		tri := polygon([2]float64{22.5, 12.5}, [2]float64{31.5, 30.5}, [2]float64{13.5, 30.5})
		ring := polygon([2]float64{22.5, 9.8}, [2]float64{32, 31.5}, [2]float64{13, 31.5})
		cv.fill(cv.halo(), ring)
		cv.fill(orange, tri)
		cv.fill(paper, union(segment(22.5, 18.5, 22.5, 24.5, 2.6), circle(22.5, 27.8, 1.4)))
	case Offline:
		cv.note(ink, ink, false)
		cv.badgeDisc(slate)
		cloud := union(circle(20.5, 23.5, 3.3), circle(24.2, 22.2, 3.8), roundRect(16.8, 23, 28.2, 27, 2))
		cv.fill(paper, cloud)
		cv.fill(red, segment(16.2, 16.8, 28.8, 28.2, 2.4))
	case LoggedOut:
		cv.note(ink, ink, true)
		cv.badgeDisc(purple)
		// a padlock
		cv.fill(paper, minus(roundRect(19.3, 16.6, 25.7, 25, 3.2), roundRect(20.9, 18.2, 24.1, 25, 1.6)))
		cv.fill(paper, roundRect(17.8, 21.5, 27.2, 28.5, 1))
		cv.fill(purple, circle(22.5, 24.6, 1.2))
	case NotRunning:
		// the whole note dimmed, no badge: nothing is running to say more
		faint := dim
		faint.A = 0xb0
		cv.note(faint, faint, false)
		cv.fill(faint, minus(circle(bx, by, br), circle(bx, by, br-2.2)))
		cv.fill(faint, segment(16.9, 28.1, 28.1, 16.9, 2.2))
	default:
		panic("draw: unknown state " + state)
	}
	return cv.img
}
