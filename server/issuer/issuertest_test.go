package issuer

import (
	"testing"

	"github.com/basicmachines-co/bm-agent/server/issuer/issuertest"
)

// TestScriptedBrowserFields keeps the scripted browser's form fields those
// of the pages (it does not import this package; the ids are checked by
// every test that logs in through it).
func TestScriptedBrowserFields(t *testing.T) {
	for _, tt := range []struct{ browser, page string }{
		{issuertest.FieldEmail, fieldEmail},
		{issuertest.FieldPassword, fieldPassword},
	} {
		if tt.browser != tt.page {
			t.Errorf("the browser fills in %q, the page has %q", tt.browser, tt.page)
		}
	}
}
