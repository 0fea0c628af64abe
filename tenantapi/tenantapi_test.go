package tenantapi

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsOnlyTheStandardLibrary keeps the package what both sides can
// import: a path whose first element has no dot is the standard library's.
func TestImportsOnlyTheStandardLibrary(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(p, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %s: the wire types must depend on the standard library only", name, p)
			}
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no source file checked")
	}
}

// TestTenantStatusStorageFields: the storage figures are optional, so a
// body without them (an older server) and a client that does not know
// them (an older client) both keep working.
func TestTenantStatusStorageFields(t *testing.T) {
	var old TenantStatus
	if err := json.Unmarshal([]byte(`{"tenant_id":"t","subscription_status":"active","subscription_tier":"pro","bucket_name":"b","devices":1}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.StorageUsedBytes != nil || old.StorageQuotaBytes != nil {
		t.Errorf("figures from a body without them: %v %v", old.StorageUsedBytes, old.StorageQuotaBytes)
	}
	if b, _ := json.Marshal(old); strings.Contains(string(b), "storage_") {
		t.Errorf("absent figures are sent: %s", b)
	}
	used, quota := int64(5), int64(0)
	b, err := json.Marshal(TenantStatus{TenantID: "t", StorageUsedBytes: &used, StorageQuotaBytes: &quota})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"storage_used_bytes":5`) || !strings.Contains(string(b), `"storage_quota_bytes":0`) {
		t.Errorf("body = %s", b)
	}
	var older struct {
		TenantID string `json:"tenant_id"`
		Devices  int    `json:"devices"`
	}
	if err := json.Unmarshal(b, &older); err != nil || older.TenantID != "t" {
		t.Errorf("an older client's decoding: %v %+v", err, older)
	}
}
