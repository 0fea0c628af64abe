package packaging

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

const launchdLabel = "com.basicmemory.bm-agent"

// UnitPath is where the launchd agent goes.
func (i *Installer) UnitPath() string {
	return filepath.Join(i.HomeDir, "Library", "LaunchAgents", launchdLabel+".plist")
}

func (i *Installer) launchctl(ctx context.Context, res *Result, args ...string) error {
	return i.try(ctx, res, "launchctl", args...)
}

// Install writes the launchd agent and loads it into the user's GUI domain.
// The tray is a login item the app bundle registers; nothing to do here.
func (i *Installer) Install(ctx context.Context, p Params, start bool) (Result, error) {
	res := Result{Manager: ManagerLaunchd}
	plist, err := LaunchdPlist(p)
	if err != nil {
		return res, err
	}
	if _, err := writeFile(i.UnitPath(), plist, 0o644); err != nil {
		return res, err
	}
	res.Files = append(res.Files, i.UnitPath())
	if start {
		domain := "gui/" + strconv.Itoa(os.Getuid())
		_ = i.launchctl(ctx, &res, "bootout", domain+"/"+launchdLabel)
		if err := i.launchctl(ctx, &res, "bootstrap", domain, i.UnitPath()); err != nil {
			_ = os.Remove(i.UnitPath())
			res.Files = nil
			return res, fmt.Errorf("install: %w", err)
		}
		res.Started = true
	}
	return res, nil
}

// Installed is ManagerLaunchd when the agent's plist is there, else "".
func (i *Installer) Installed(context.Context) string {
	if _, err := os.Stat(i.UnitPath()); err == nil {
		return ManagerLaunchd
	}
	return ""
}

// Uninstall unloads the agent and removes its plist.
func (i *Installer) Uninstall(ctx context.Context) (Result, error) {
	res := Result{Manager: i.Installed(ctx)}
	_ = i.launchctl(ctx, &res, "bootout", "gui/"+strconv.Itoa(os.Getuid())+"/"+launchdLabel)
	if err := removeFiles(&res, i.UnitPath()); err != nil {
		return res, err
	}
	return res, nil
}
