// Command gen writes bm-tray's icons (go generate in ui/tray/icons): for
// each state a PNG at each panel size, a macOS template PNG at 16 and 32
// px (@2x), and a Windows ICO holding PNG images of four sizes.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/basicmachines-co/bm-agent/ui/tray/icons/draw"
)

func main() {
	out := flag.String("out", ".", "the folder to write png/, template/ and ico/ into")
	flag.Parse()
	if err := run(*out); err != nil {
		log.Fatal(err)
	}
}

func run(out string) error {
	files, err := draw.Files()
	if err != nil {
		return err
	}
	for name, b := range files {
		p := filepath.Join(out, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("gen: %w", err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("gen: %w", err)
		}
	}
	return nil
}
