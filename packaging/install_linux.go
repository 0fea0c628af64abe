package packaging

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

func (i *Installer) configDir() string {
	if i.ConfigDir != "" {
		return i.ConfigDir
	}
	return filepath.Join(i.HomeDir, ".config")
}

// UnitPath is where the systemd user unit goes.
func (i *Installer) UnitPath() string {
	return filepath.Join(i.configDir(), "systemd", "user", ServiceName+".service")
}

// AutostartPath is where the tray's XDG autostart entry goes.
func (i *Installer) AutostartPath() string {
	return filepath.Join(i.configDir(), "autostart", "bm-tray.desktop")
}

func (i *Installer) systemctl(ctx context.Context, res *Result, args ...string) error {
	return i.run(ctx, res, "systemctl", append([]string{"--user"}, args...)...)
}

// Install writes the systemd user unit (and the tray's autostart entry when
// p.TrayPath is set), then enables the unit and, if start, starts it.
func (i *Installer) Install(ctx context.Context, p Params, start bool) (Result, error) {
	var res Result
	unit, err := SystemdUnit(p)
	if err != nil {
		return res, err
	}
	if _, err := writeFile(i.UnitPath(), unit, 0o644); err != nil {
		return res, err
	}
	res.Files = append(res.Files, i.UnitPath())
	if p.TrayPath != "" {
		entry, err := TrayDesktopEntry(p)
		if err != nil {
			return res, err
		}
		if _, err := writeFile(i.AutostartPath(), entry, 0o644); err != nil {
			return res, err
		}
		res.Files = append(res.Files, i.AutostartPath())
	}
	if err := i.systemctl(ctx, &res, "daemon-reload"); err != nil {
		return res, fmt.Errorf("install: %w", err)
	}
	enable := []string{"enable", ServiceName + ".service"}
	if start {
		enable = []string{"enable", "--now", ServiceName + ".service"}
	}
	if err := i.systemctl(ctx, &res, enable...); err != nil {
		return res, fmt.Errorf("install: %w", err)
	}
	return res, nil
}

// Uninstall stops and disables the unit and removes what Install wrote. It
// leaves the agent's config, state and the notes folder alone.
func (i *Installer) Uninstall(ctx context.Context) (Result, error) {
	var res Result
	_, statErr := os.Stat(i.UnitPath())
	if statErr == nil {
		// A unit that is already stopped or unknown to systemd is fine.
		_ = i.systemctl(ctx, &res, "disable", "--now", ServiceName+".service")
	}
	if err := removeFiles(&res, i.UnitPath(), i.AutostartPath()); err != nil {
		return res, err
	}
	if statErr == nil {
		if err := i.systemctl(ctx, &res, "daemon-reload"); err != nil {
			return res, fmt.Errorf("uninstall: %w", err)
		}
	}
	return res, nil
}
