package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server"
	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/keyring"
)

func masterKeyText(t *testing.T) string {
	t.Helper()
	raw := make([]byte, keyring.MasterKeyLen)
	rand.Read(raw)
	return base64.StdEncoding.EncodeToString(raw)
}

// TestKeysRotateAndList: on a data dir whose server ran without a master
// key, `keys rotate` with one imports its issuer.pem into the database and
// retires it for a new key; `keys list` shows both (kid, state, times,
// never a secret), as a table and as JSON; a second rotation from a
// master key file retires the second key. Without a master key, rotate
// refuses and says why; a wrong one is refused too.
func TestKeysRotateAndList(t *testing.T) {
	c := newCLI(t)
	c.env["BM_SERVER_PASSWORD"] = "a password"
	c.must("user", "add", "ann@example.com") // a server without a master key: issuer.pem
	fileKey, err := issuer.ReadKey(filepath.Join(c.dir, "issuer.pem"))
	if err != nil {
		t.Fatal(err)
	}
	fileKid, _ := issuer.KeyID(&fileKey.PublicKey)

	if _, err := c.run("keys", "rotate"); !errors.Is(err, server.ErrNoMasterKey) {
		t.Errorf("keys rotate without a master key: %v, want ErrNoMasterKey", err)
	}
	if out, err := c.run("keys", "list"); err != nil || strings.Contains(out, fileKid) {
		t.Errorf("keys list before any master key = %q, %v; want no key", out, err)
	}

	mk := masterKeyText(t)
	c.env[server.EnvMasterKey] = mk
	out := c.must("keys", "rotate")
	if !strings.Contains(out, fileKid+" is retired") {
		t.Errorf("keys rotate = %q; want the imported key %s retired", out, fileKid)
	}
	var list []keyring.KeyInfo
	if err := json.Unmarshal([]byte(c.must("keys", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].State != keyring.StateActive || list[1].KID != fileKid || list[1].State != keyring.StateRetired ||
		list[1].RetiredAt == nil || list[1].VerifiesUntil == nil {
		t.Fatalf("keys list --json = %+v; want the new key active and %s retired", list, fileKid)
	}
	table := c.must("keys", "list")
	for _, want := range []string{"KID", "STATE", "VERIFIES UNTIL", list[0].KID + "  active", fileKid + "  retired"} {
		if !strings.Contains(table, want) {
			t.Errorf("keys list lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, mk) || strings.Contains(table, "PRIVATE") {
		t.Error("keys list shows secret material")
	}

	// The master key from a file (0600), not the environment.
	delete(c.env, server.EnvMasterKey)
	keyFile := filepath.Join(t.TempDir(), "fleet.key")
	if err := os.WriteFile(keyFile, []byte(mk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var rotated map[string]keyring.KeyInfo
	if err := json.Unmarshal([]byte(c.must("keys", "rotate", "--json", "--master-key-file", keyFile)), &rotated); err != nil {
		t.Fatal(err)
	}
	if rotated["retired"].KID != list[0].KID || rotated["active"].KID == list[0].KID {
		t.Errorf("second rotation = %+v; want %s retired", rotated, list[0].KID)
	}
	c.env[server.EnvMasterKey] = masterKeyText(t)
	if _, err := c.run("keys", "rotate"); !errors.Is(err, keyring.ErrWrongMasterKey) {
		t.Errorf("keys rotate with another master key: %v, want ErrWrongMasterKey", err)
	}
	// A server without the master key on this database now refuses.
	delete(c.env, server.EnvMasterKey)
	if _, err := c.run("user", "add", "bob@example.com"); !errors.Is(err, keyring.ErrMasterKeyRequired) {
		t.Errorf("a server command without the master key: %v, want ErrMasterKeyRequired", err)
	}
	if keys, err := c.store().SigningKeys(context.Background(), time.Time{}); err != nil || len(keys) != 3 {
		t.Errorf("%d keys in the database (%v), want 3", len(keys), err)
	}
}
