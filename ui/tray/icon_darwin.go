package tray

import (
	"fyne.io/systray"

	"github.com/basicmachines-co/bm-agent/ui/tray/icons"
)

// setIcon sends the template image: the menu bar draws it in its own
// colour, light or dark, at 16 pt (the 32 px image is sharp at @2x); the
// badge's shape tells the state.
func setIcon(s icons.State) {
	systray.SetTemplateIcon(icons.Template(s, 32), icons.PNG(s, 32))
}
