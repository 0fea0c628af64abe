package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// liveSettings are the settings ConfigSet applies without a restart.
type liveSettings struct {
	interval, debounce, maxWait time.Duration
	profile                     string
}

func (d *Daemon) liveSettings() liveSettings {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.live
}

// Bounds of the duration settings.
const (
	minInterval = 5 * time.Second
	maxDuration = 7 * 24 * time.Hour
)

// ConfigGet implements ipc.Configurer: the settings in effect, and under
// [ipc.ConfigSources] where each comes from.
func (d *Daemon) ConfigGet(context.Context) (map[string]any, error) {
	d.mu.Lock()
	c := d.cfg
	l := d.live
	vs := d.versions
	d.mu.Unlock()
	c.Interval, c.Debounce, c.MaxWait, c.Profile = Duration(l.interval), Duration(l.debounce), Duration(l.maxWait), l.profile
	c.VersionsDays, c.VersionsMaxMB = &vs.days, int(vs.maxBytes>>20)
	return configMap(c)
}

func configMap(c Config) (map[string]any, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config get: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("config get: %w", err)
	}
	m["home"] = c.Home
	for _, s := range settings {
		if _, ok := m[s.key]; !ok {
			m[s.key] = "" // unset (a URL without a default): shown, not hidden
		}
	}
	if c.Sources != nil {
		m[ipc.ConfigSources] = maps.Clone(c.Sources)
	}
	return m, nil
}

// ConfigSet implements ipc.Configurer: it checks the value (see settings),
// writes it to the config file (atomically) and applies interval, debounce,
// max_wait and profile at once; the others need a restart (the answer says
// so). A key that a flag or an environment variable of the daemon sets is
// saved but not applied: the answer names that origin under
// [ipc.ConfigOverriddenBy].
func (d *Daemon) ConfigSet(ctx context.Context, key, value string) (map[string]any, error) {
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	k, file, err := saveSetting(d.cfg.Home, key, value)
	if err != nil {
		return nil, err
	}
	key, value = k.key, strings.TrimSpace(value)
	dur, num := liveValue(key, file)
	d.mu.Lock()
	over := d.cfg.Sources[key]
	if !over.overrides() {
		d.cfg.Sources = withSource(d.cfg.Sources, key, Origin{SourceConfig, filepath.Join(d.cfg.Home, "config.json")})
	}
	d.mu.Unlock()
	if over.overrides() {
		d.log.Info("config saved, not applied: a flag or variable sets it", "key", key, "overridden_by", over.String())
		m, err := d.ConfigGet(ctx)
		if err != nil {
			return nil, err
		}
		m[ipc.ConfigOverriddenBy] = over
		return m, nil
	}
	d.mu.Lock()
	switch key {
	case "interval":
		d.live.interval = dur
	case "debounce":
		d.live.debounce = dur
	case "max_wait":
		d.live.maxWait = dur
	case "profile":
		d.live.profile = value
	case "versions_days":
		d.versions.days = num
	case "versions_max_mb":
		d.versions.maxBytes = int64(num) << 20
	case "notifications": // the tray reads it through ConfigGet
		d.cfg.Notifications = file.Notifications
	}
	d.mu.Unlock()
	if key == "versions_days" || key == "versions_max_mb" {
		select {
		case d.versionsChanged <- struct{}{}:
		default:
		}
	}
	if key == "profile" {
		d.store.Update(func(st *ipc.Status) { st.Profile = value })
	}
	if !k.restart {
		select {
		case d.cfgChanged <- struct{}{}:
		default:
		}
	}
	d.log.Info("config changed", "key", key, "restart_required", k.restart)
	m, err := d.ConfigGet(ctx)
	if err != nil {
		return nil, err
	}
	if k.restart {
		m[ipc.ConfigRestartRequired] = true
		m["pending"] = map[string]any{key: value}
	}
	return m, nil
}
