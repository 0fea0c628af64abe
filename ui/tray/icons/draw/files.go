package draw

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image/png"
)

// Files returns every icon file by its slash path under the icons folder.
func Files() (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, st := range States {
		for _, size := range Sizes {
			b, err := encode(st, size, false)
			if err != nil {
				return nil, err
			}
			files[fmt.Sprintf("png/%s-%d.png", st, size)] = b
		}
		for _, size := range TemplateSizes {
			b, err := encode(st, size, true)
			if err != nil {
				return nil, err
			}
			files[fmt.Sprintf("template/%s-%d.png", st, size)] = b
		}
		ico, err := icoFile(st)
		if err != nil {
			return nil, err
		}
		files["ico/"+st+".ico"] = ico
	}
	return files, nil
}

func encode(state string, size int, template bool) ([]byte, error) {
	var b bytes.Buffer
	if err := png.Encode(&b, Render(state, size, template)); err != nil {
		return nil, fmt.Errorf("gen: encode %s %d: %w", state, size, err)
	}
	return b.Bytes(), nil
}

// icoFile writes an ICO whose images are PNGs (Windows Vista and later
// read them).
func icoFile(state string) ([]byte, error) {
	var imgs [][]byte
	for _, size := range ICOSizes {
		b, err := encode(state, size, false)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, b)
	}
	var buf bytes.Buffer
	le := binary.LittleEndian
	_ = binary.Write(&buf, le, [3]uint16{0, 1, uint16(len(imgs))}) // reserved, type icon, count
	offset := 6 + 16*len(imgs)
	for i, b := range imgs {
		size := ICOSizes[i]
		dim := byte(size)
		if size >= 256 {
			dim = 0
		}
		buf.Write([]byte{dim, dim, 0, 0})            // width, height, palette, reserved
		_ = binary.Write(&buf, le, [2]uint16{1, 32}) // planes, bits per pixel
		_ = binary.Write(&buf, le, [2]uint32{uint32(len(b)), uint32(offset)})
		offset += len(b)
	}
	for _, b := range imgs {
		buf.Write(b)
	}
	return buf.Bytes(), nil
}
