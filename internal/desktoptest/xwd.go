//go:build linux

package desktoptest

import (
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"math/bits"
)

// DecodeXWD reads a screen dump in the X Window Dump format that xwd
// writes (ZPixmap, TrueColor, 24 or 32 bits per pixel).
func DecodeXWD(b []byte) (*image.NRGBA, error) {
	if len(b) < 100 {
		return nil, fmt.Errorf("xwd: %d bytes, too short", len(b))
	}
	var h [25]uint32
	for i := range h {
		h[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	headerSize, version, format, width, height := h[0], h[1], h[2], int(h[4]), int(h[5])
	byteOrder, bpp, bytesPerLine := h[7], int(h[11]), int(h[12])
	rmask, gmask, bmask, ncolors := h[14], h[15], h[16], h[19]
	if version != 7 || format != 2 {
		return nil, fmt.Errorf("xwd: version %d format %d, want 7 and ZPixmap (2)", version, format)
	}
	if bpp != 24 && bpp != 32 {
		return nil, fmt.Errorf("xwd: %d bits per pixel, want 24 or 32", bpp)
	}
	off := int(headerSize) + 12*int(ncolors)
	if len(b) < off+height*bytesPerLine {
		return nil, fmt.Errorf("xwd: %d bytes, want %d", len(b), off+height*bytesPerLine)
	}
	channel := func(px, mask uint32) uint8 {
		if mask == 0 {
			return 0
		}
		v := (px & mask) >> bits.TrailingZeros32(mask)
		return uint8(v * 255 / (mask >> bits.TrailingZeros32(mask)))
	}
	img := image.NewNRGBA(image.Rect(0, 0, width, height))
	step := bpp / 8
	for y := range height {
		row := b[off+y*bytesPerLine:]
		for x := range width {
			p := row[x*step : x*step+step]
			var px uint32
			if byteOrder == 0 { // LSBFirst
				for i := step - 1; i >= 0; i-- {
					px = px<<8 | uint32(p[i])
				}
			} else {
				for i := range step {
					px = px<<8 | uint32(p[i])
				}
			}
			img.SetNRGBA(x, y, color.NRGBA{channel(px, rmask), channel(px, gmask), channel(px, bmask), 0xff})
		}
	}
	return img, nil
}
