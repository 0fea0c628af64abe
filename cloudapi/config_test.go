package cloudapi

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

func TestLoadConfigDefaults(t *testing.T) {
	t.Setenv(EnvHost, "https://env.example") // read by the agent's resolver, not here
	tests := []struct {
		in, want Config
	}{
		{Config{}, Config{ClientID: tenantapi.DefaultClientID}},
		{Config{Host: "https://agent.example/"}, Config{Host: "https://agent.example", Domain: "https://agent.example", ClientID: tenantapi.DefaultClientID}},
		{Config{Host: "https://a.example", Domain: " https://auth.example/ ", ClientID: "c"}, Config{Host: "https://a.example", Domain: "https://auth.example", ClientID: "c"}},
	}
	for _, tt := range tests {
		if got := LoadConfig(tt.in); got != tt.want {
			t.Errorf("LoadConfig(%+v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestReadBasicMemoryConfig(t *testing.T) {
	const file = `{"cloud_host": "https://bm.example", "cloud_domain": "https://auth.bm.example", "cloud_client_id": "bm", "projects": {}}`
	want := Config{Host: "https://bm.example", Domain: "https://auth.bm.example", ClientID: "bm"}
	tests := []struct {
		name    string
		env     map[string]string // paths relative to the test's dir
		files   []string          // config.json files written, relative
		want    string            // the one read, relative ("" none)
		wantErr bool
	}{
		{"none", nil, nil, "", false},
		{"~/.basic-memory", nil, []string{"home/.basic-memory/config.json", "home/.config/basic-memory/config.json"}, "home/.basic-memory/config.json", false},
		{"~/.config/basic-memory when XDG_CONFIG_HOME is unset", nil, []string{"home/.config/basic-memory/config.json"}, "home/.config/basic-memory/config.json", false},
		{"$XDG_CONFIG_HOME/basic-memory", map[string]string{"XDG_CONFIG_HOME": "xdg"}, []string{"xdg/basic-memory/config.json"}, "xdg/basic-memory/config.json", false},
		{"$BASIC_MEMORY_CONFIG_DIR alone when set", map[string]string{EnvConfigDir: "bmdir"}, []string{"bmdir/config.json", "home/.basic-memory/config.json"}, "bmdir/config.json", false},
		{"$BASIC_MEMORY_CONFIG_DIR without a file: nothing else", map[string]string{EnvConfigDir: "bmdir"}, []string{"home/.basic-memory/config.json"}, "", false},
		{"a file that does not parse", nil, []string{"home/.basic-memory/config.json"}, "home/.basic-memory/config.json", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := map[string]string{"HOME": filepath.Join(dir, "home")}
			for k, v := range tt.env {
				env[k] = filepath.Join(dir, v)
			}
			for _, f := range tt.files {
				p := filepath.Join(dir, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				content := file
				if tt.wantErr {
					content = "{not json"
				}
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, path, err := ReadBasicMemoryConfig(func(k string) string { return env[k] })
			wantPath := ""
			if tt.want != "" {
				wantPath = filepath.Join(dir, tt.want)
			}
			if path != wantPath || (err != nil) != tt.wantErr {
				t.Fatalf("read %q, %v; want %q, error %v", path, err, wantPath, tt.wantErr)
			}
			if tt.want != "" && !tt.wantErr && got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://api.example.com", true},
		{"https://api.example.com:8443/base", true},
		{"http://127.0.0.1:8080", true},
		{"http://127.1.2.3", true},
		{"http://[::1]:9000", true},
		{"http://localhost:3000", true},
		{"http://LOCALHOST", true},
		{"http://api.example.com", false},
		{"http://10.0.0.1", false},
		{"http://localhost.evil.example", false},
		{"ftp://api.example.com", false},
		{"api.example.com", false},
		{"https://", false},
		{"https://user:pass@api.example.com", false},
		{"://bad", false},
	}
	for _, tt := range tests {
		err := CheckURL(tt.url)
		if (err == nil) != tt.ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}
