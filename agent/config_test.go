package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{`"60s"`, time.Minute, false},
		{`"1m30s"`, 90 * time.Second, false},
		{`90`, 90 * time.Second, false},
		{`"soon"`, 0, true},
		{`true`, 0, true},
	}
	for _, tt := range tests {
		var d Duration
		err := json.Unmarshal([]byte(tt.in), &d)
		if (err != nil) != tt.err {
			t.Errorf("%s: err %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !tt.err && time.Duration(d) != tt.want {
			t.Errorf("%s: got %s, want %s", tt.in, time.Duration(d), tt.want)
		}
	}
}

func TestConfigSaveLoad(t *testing.T) {
	home := t.TempDir()
	c, err := LoadConfig(home)
	if err != nil {
		t.Fatalf("missing file must give defaults: %v", err)
	}
	c.Folder = "/notes"
	c.Interval = Duration(5 * time.Minute)
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(home, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if got.Folder != "/notes" || time.Duration(got.Interval) != 5*time.Minute || got.Home != home {
		t.Errorf("round trip: %+v", got)
	}
	if err := os.WriteFile(filepath.Join(home, "config.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(home); err == nil {
		t.Error("a corrupt config file must be an error, not silently the defaults")
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{Home: "h"}.withDefaults()
	if c.Folder == "" || c.Device == "" {
		t.Errorf("defaults missing: %+v", c)
	}
	if time.Duration(c.Interval) != time.Minute || time.Duration(c.Debounce) != time.Second || time.Duration(c.MaxWait) != 10*time.Second {
		t.Errorf("timing defaults: %+v", c)
	}
}

func TestVersionsSettings(t *testing.T) {
	for _, tc := range []struct {
		json     string
		days     int
		maxBytes int64
	}{
		{`{}`, DefaultVersionsDays, DefaultVersionsMaxMB << 20},
		{`{"versions_days": 0}`, 0, DefaultVersionsMaxMB << 20},
		{`{"versions_days": 90, "versions_max_mb": 10}`, 90, 10 << 20},
	} {
		home := t.TempDir()
		if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(tc.json), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(home)
		if err != nil {
			t.Fatal(err)
		}
		if c.versionsDays() != tc.days || c.versionsMaxBytes() != tc.maxBytes {
			t.Errorf("%s: days %d max %d, want %d %d", tc.json, c.versionsDays(), c.versionsMaxBytes(), tc.days, tc.maxBytes)
		}
	}
}
