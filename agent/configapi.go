package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/cloudapi"
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

// configKeys are the settable keys; restart says whether a change only
// applies after a restart.
var configKeys = map[string]struct{ restart bool }{
	"folder":          {true},
	"cloud_host":      {true},
	"cloud_domain":    {true},
	"cloud_client_id": {true},
	"device":          {true},
	"interval":        {false},
	"debounce":        {false},
	"max_wait":        {false},
	"profile":         {false},
	"versions_days":   {false},
	"versions_max_mb": {false},
}

// Bounds of the duration settings.
const (
	minInterval = 5 * time.Second
	maxDuration = 7 * 24 * time.Hour
)

// ConfigGet implements ipc.Configurer: the settings in effect.
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
	return m, nil
}

// ConfigSet implements ipc.Configurer: it validates the value, writes it to
// the config file (atomically) and applies interval, debounce, max_wait and
// profile at once; the others need a restart (the answer says so).
func (d *Daemon) ConfigSet(ctx context.Context, key, value string) (map[string]any, error) {
	key = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(key)), "-", "_")
	k, ok := configKeys[key]
	if !ok {
		return nil, fmt.Errorf("config set %q: %w: unknown key (one of folder, interval, debounce, max_wait, profile, versions_days, versions_max_mb, device, cloud_host, cloud_domain, cloud_client_id)", key, ipc.ErrInvalid)
	}
	value = strings.TrimSpace(value)
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	file, err := LoadConfig(d.cfg.Home)
	if err != nil {
		return nil, fmt.Errorf("config set %s: %w", key, err)
	}
	var dur time.Duration
	var num int
	switch key {
	case "versions_days", "versions_max_mb":
		lo, hi := 0, 3650
		if key == "versions_max_mb" {
			lo, hi = 1, 1<<20
		}
		num, err = strconv.Atoi(value)
		if err != nil || num < lo || num > hi {
			return nil, fmt.Errorf("config set %s: %w: %q: want a whole number from %d to %d", key, ipc.ErrInvalid, value, lo, hi)
		}
	case "interval", "debounce", "max_wait":
		dur, err = time.ParseDuration(value)
		if err != nil {
			return nil, fmt.Errorf("config set %s: %w: %q is not a duration (like 30s, 5m, 1h)", key, ipc.ErrInvalid, value)
		}
		lo := time.Duration(0)
		if key == "interval" {
			lo = minInterval
		}
		if dur <= lo || dur > maxDuration {
			return nil, fmt.Errorf("config set %s: %w: %s is out of range (%s to %s)", key, ipc.ErrInvalid, dur, max(lo, time.Millisecond), maxDuration)
		}
	case "profile":
		if !validProfile(value) {
			return nil, fmt.Errorf("config set profile: %w: %q: want safe, balanced or fast", ipc.ErrInvalid, value)
		}
	case "folder":
		if value == "" {
			return nil, fmt.Errorf("config set folder: %w: empty", ipc.ErrInvalid)
		}
	case "cloud_host", "cloud_domain":
		if value != "" {
			if err := cloudapi.CheckURL(value); err != nil {
				return nil, fmt.Errorf("config set %s: %w: %v", key, ipc.ErrInvalid, err)
			}
		}
	}
	switch key {
	case "folder":
		file.Folder = value
	case "cloud_host":
		file.CloudHost = value
	case "cloud_domain":
		file.CloudDomain = value
	case "cloud_client_id":
		file.ClientID = value
	case "device":
		file.Device = value
	case "interval":
		file.Interval = Duration(dur)
	case "debounce":
		file.Debounce = Duration(dur)
	case "max_wait":
		file.MaxWait = Duration(dur)
	case "profile":
		file.Profile = value
	case "versions_days":
		file.VersionsDays = &num
	case "versions_max_mb":
		file.VersionsMaxMB = num
	}
	if err := file.Save(); err != nil {
		return nil, fmt.Errorf("config set %s: %w", key, err)
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
