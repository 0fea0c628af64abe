// Package icons holds bm-tray's icons, one per state a person tells apart
// at a glance: PNGs for the panels (22, 24 and 32 px), macOS template
// images and Windows ICOs. They are drawn by package draw and written by
// `go generate` (the gen program); the files are committed and embedded.
package icons

//go:generate go run ./gen -out .

import (
	"embed"
	"fmt"

	"github.com/basicmachines-co/bm-agent/ui/tray/icons/draw"
)

// State names one icon.
type State string

// The states with an icon.
const (
	UpToDate   State = draw.UpToDate
	Syncing    State = draw.Syncing
	Paused     State = draw.Paused
	Attention  State = draw.Attention
	Offline    State = draw.Offline
	LoggedOut  State = draw.LoggedOut
	NotRunning State = draw.NotRunning
)

// All lists every state.
func All() []State {
	out := make([]State, 0, len(draw.States))
	for _, s := range draw.States {
		out = append(out, State(s))
	}
	return out
}

//go:embed png/*.png template/*.png ico/*.ico
var files embed.FS

// PNG returns the state's icon at size px (22, 24 or 32).
func PNG(s State, size int) []byte { return mustRead(fmt.Sprintf("png/%s-%d.png", s, size)) }

// Template returns the state's macOS template image at size px (16, or 32
// for @2x).
func Template(s State, size int) []byte {
	return mustRead(fmt.Sprintf("template/%s-%d.png", s, size))
}

// ICO returns the state's Windows icon (16, 24, 32 and 48 px).
func ICO(s State) []byte { return mustRead("ico/" + string(s) + ".ico") }

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("icons: " + err.Error()) // a state or size with no file is a bug
	}
	return b
}
